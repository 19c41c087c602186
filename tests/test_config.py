"""Settings: environment over secrets.toml, validation, and the development sign-in rule."""

from __future__ import annotations

import dataclasses

import pytest

from core.config import DEFAULT_QUEUES, load_settings
from core.errors import ConfigurationError


def test_environment_wins_over_secrets_and_defaults_fill_the_rest(tmp_path):
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('MONGODB_URI = "mongodb://from-secrets"\nMONGODB_DB = "clinic_db"\n')
    settings = load_settings({"MONGODB_URI": "mongodb://from-env", "DATA_DIR": str(tmp_path)}, secrets)

    assert settings.mongodb_uri == "mongodb://from-env"
    assert settings.mongodb_db == "clinic_db"
    assert settings.redis_url is None
    assert settings.worker_queues == DEFAULT_QUEUES
    assert settings.data_dir == tmp_path
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.mongodb_db = "other"  # type: ignore[misc]


def test_dev_signin_is_refused_once_oidc_is_configured(tmp_path):
    secrets = tmp_path / "secrets.toml"
    assert load_settings({"DEV_SIGNIN": "1"}, secrets).dev_signin_allowed
    secrets.write_text('[auth]\nclient_id = "x"\n')
    assert not load_settings({"DEV_SIGNIN": "1"}, secrets).dev_signin_allowed
    assert not load_settings({}, tmp_path / "none.toml").dev_signin_allowed


@pytest.mark.parametrize(("env", "message"), [
    ({"ASSET_STORE": "s3"}, "ASSET_STORE is 's3'; choose one of files, gridfs"),
    ({"MONGODB_DB": "bad/name"}, "not a valid database name"),
])
def test_bad_settings_say_what_to_fix(tmp_path, env, message):
    with pytest.raises(ConfigurationError, match=message):
        load_settings(env, tmp_path / "none.toml")


def test_a_broken_secrets_file_is_reported_with_its_path(tmp_path):
    secrets = tmp_path / "secrets.toml"
    secrets.write_text("MONGODB_URI = \n")
    with pytest.raises(ConfigurationError, match=r"secrets\.toml is not valid TOML"):
        load_settings({}, secrets)
