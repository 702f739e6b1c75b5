"""``mmalign encoders``: what is registered (answered from specs: no weights are loaded)."""

from __future__ import annotations

import json

import click

from mmalign.plugin.encoders.registry import DEFAULT_PRESET, list_presets


@click.group()
def encoders() -> None:
    """Encoders and presets (answered from specs: no weights are loaded)."""


@encoders.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def encoders_list(as_json: bool) -> None:
    """List registered encoders (with output size) and presets."""
    from mmalign.plugin.encoders.registry import encoder_info, get_preset, list_encoders
    from mmalign.plugin.encoders.weights import is_packaged, packaged_weights_available

    infos = [encoder_info(name) for name in list_encoders()]
    presets = [get_preset(name) for name in list_presets()]
    if as_json:
        click.echo(
            json.dumps(
                {
                    "encoders": [i.model_dump(mode="json") for i in infos],
                    "presets": [p.model_dump(mode="json") for p in presets],
                    "default_preset": DEFAULT_PRESET,
                },
                indent=2,
            )
        )
        return
    name_w = max([len("encoder"), *(len(i.name) for i in infos)]) + 2
    kind_w = max([len("kind"), *(len(i.kind) for i in infos)]) + 2
    click.echo(f"{'encoder':<{name_w}}{'modality':<10}{'dim':>6}  {'kind':<{kind_w}}weights")
    for info in infos:
        status = ""
        if is_packaged(info.weights):
            status = " (installed)" if packaged_weights_available(info.weights) else " (NOT installed)"
        row = f"{info.name:<{name_w}}{info.modality.value:<10}{info.dim:>6}  {info.kind:<{kind_w}}"
        click.echo(f"{row}{info.weights or '-'}{status}")
    click.echo("")
    preset_w = max([len("preset"), *(len(p.name) for p in presets)]) + 2
    part_w = max([len("image"), *(len(x or "-") for p in presets for x in (p.image, p.text))]) + 2
    click.echo(f"{'preset':<{preset_w}}{'image':<{part_w}}{'text':<{part_w}}audio")
    for preset in presets:
        mark = " (default)" if preset.name == DEFAULT_PRESET else ""
        image, text = preset.image or "-", preset.text or "-"
        click.echo(f"{preset.name:<{preset_w}}{image:<{part_w}}{text:<{part_w}}{preset.audio or '-'}{mark}")
