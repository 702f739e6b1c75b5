"""The Papirus catalog builder on a fake theme folder (the real package is only needed by the benchmark)."""

import json
import os

from mmalign.connectors.datasets.papirus import build_items, readable, write_catalog


def _svg(path, color):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><rect fill="{color}"/></svg>')


def test_readable_names():
    assert readable("org.gnome.Nautilus", "apps") == "nautilus (gnome)"
    assert readable("application-x-python", "mimetypes") == "application python"
    assert readable("folder-magenta-recent", "places") == "folder magenta recent"
    assert readable("YACReaderLibrary", "apps") == "yac reader library"
    assert readable("steam_icon_287390", "apps") == "steam icon"
    assert readable("09BE_EpicGamesLauncher.0", "apps") == "epic games launcher 0"
    assert readable("gnome-2048", "apps") == "gnome 2048" and readable("face-smile", "apps") == "face smile"


def test_papirus_items_from_a_fake_theme(tmp_path):
    root = tmp_path / "Papirus" / "64x64"
    _svg(root / "apps" / "org.gnome.Nautilus.svg", "red")
    _svg(root / "apps" / "firefox.svg", "orange")
    _svg(root / "apps" / "chrome-abcdefghijklmnopabcdefghijklmnop-Default.svg", "blue")  # a generated id: left out
    _svg(root / "apps" / "gnome-2048.svg", "red")  # same bytes as Nautilus: an alias of it
    _svg(root / "places" / "folder-magenta-recent.svg", "magenta")
    _svg(root / "mimetypes" / "application-x-python.svg", "yellow")
    _svg(root / "mimetypes" / "README.txt", "x")  # not an icon
    os.symlink("firefox.svg", root / "apps" / "web-browser.svg")
    os.symlink("firefox.svg", root / "apps" / "steam_icon_123456.svg")
    os.symlink("apps", root / "categories")  # as in the package: never walked twice

    items = {i["id"]: i for i in build_items(root)}
    assert sorted(items) == [
        "apps/firefox",
        "apps/gnome-2048",  # the first of two files with the same bytes, by sorted path
        "mimetypes/application-x-python",
        "places/folder-magenta-recent",
    ]
    firefox = items["apps/firefox"]
    assert firefox["image"] == "apps/firefox.svg"
    assert firefox["text"] == "firefox, application icon; also steam icon; web browser"
    assert items["places/folder-magenta-recent"]["text"] == "folder magenta recent, place icon"
    assert items["mimetypes/application-x-python"]["metadata"]["context"] == "mimetypes"
    assert items["apps/gnome-2048"]["metadata"]["aliases"] == ["org.gnome.Nautilus"]  # same drawing, other name
    assert items["apps/gnome-2048"]["text"] == "gnome 2048, application icon; also nautilus (gnome)"

    _, written = write_catalog(tmp_path / "papirus.jsonl", tmp_path / "Papirus")
    lines = [json.loads(line) for line in (tmp_path / "papirus.jsonl").read_text().splitlines()]
    assert lines == written and len(lines) == 4
    assert all(set(line) == {"id", "image", "text", "metadata"} for line in lines)


def test_package_folder_prefers_the_usual_place_and_says_none_when_missing(tmp_path):
    from mmalign.connectors.datasets.debian import package_folder

    assert package_folder("no-such-package-mmalign", tmp_path, "x") == tmp_path
    assert package_folder("no-such-package-mmalign", tmp_path / "absent", "x") is None
