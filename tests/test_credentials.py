"""find_secret: argument → environment → .env → Colab's userdata, never showing the value."""

from __future__ import annotations

import sys
import types

import pytest

from suno_nb.credentials import find_secret

NAME = "SUNO_NB_TEST_SECRET"


@pytest.fixture
def colab(monkeypatch):
    """A stand-in for ``google.colab.userdata`` (raises for a missing secret, as Colab does)."""
    store: dict[str, str] = {}

    class SecretNotFoundError(Exception):
        pass

    def get(name: str) -> str:
        if name not in store:
            raise SecretNotFoundError(name)
        return store[name]

    google = types.ModuleType("google")
    colab_mod = types.ModuleType("google.colab")
    userdata = types.ModuleType("google.colab.userdata")
    userdata.get = get
    userdata.SecretNotFoundError = SecretNotFoundError
    colab_mod.userdata = userdata
    google.colab = colab_mod
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", colab_mod)
    monkeypatch.setitem(sys.modules, "google.colab.userdata", userdata)
    return store


def test_order_argument_environment_dotenv_colab(tmp_path, monkeypatch, colab):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(NAME, raising=False)
    assert find_secret(NAME) is None  # a missing Colab secret is not an error
    colab[NAME] = "from-colab-1234"
    assert find_secret(NAME).source == "colab"
    (tmp_path / ".env").write_text(f"{NAME}=from-dotenv-1234\n")
    found = find_secret(NAME)
    assert (found.value, found.source) == ("from-dotenv-1234", ".env")
    assert NAME not in __import__("os").environ  # .env is read, never copied into os.environ
    monkeypatch.setenv(NAME, "from-env-1234")
    assert find_secret(NAME).source == "environment"
    found = find_secret(NAME, "from-arg-1234")
    assert (found.value, found.source) == ("from-arg-1234", "argument")
    assert "1234" not in repr(found) and "1234" not in str(found)


def test_dotenv_found_from_a_subfolder_and_can_be_skipped(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text(f"{NAME}=up-the-tree\n")
    sub = tmp_path / "notebooks"
    sub.mkdir()
    monkeypatch.chdir(sub)
    monkeypatch.delenv(NAME, raising=False)
    assert find_secret(NAME).value == "up-the-tree"
    assert find_secret(NAME, env_file=False) is None
