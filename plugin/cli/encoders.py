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
    click.echo(f"{'encoder':<22}{'modality':<10}{'dim':>6}  {'kind':<18}weights")
    for info in infos:
        status = ""
        if is_packaged(info.weights):
            status = " (installed)" if packaged_weights_available(info.weights) else " (NOT installed)"
        click.echo(f"{info.name:<22}{info.modality.value:<10}{info.dim:>6}  {info.kind:<18}{info.weights}{status}")
    click.echo("")
    click.echo(f"{'preset':<16}{'image':<22}{'text':<22}audio")
    for preset in presets:
        mark = " (default)" if preset.name == DEFAULT_PRESET else ""
        click.echo(f"{preset.name:<16}{preset.image or '-':<22}{preset.text or '-':<22}{preset.audio or '-'}{mark}")
