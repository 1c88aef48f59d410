"""Settings from a config file under the environment: keys named like the fields, clear refusals, `httpov config`."""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest
from click.testing import CliRunner

from httpov.cli import cli
from httpov.errors import BadInputError, HomeUnsetError
from httpov.settings import Settings, env_name, masked, resolve


def _config(folder: Path, text: str) -> dict[str, str]:
    """An environment whose default config file ($XDG_CONFIG_HOME/httpov/config.toml) holds `text`."""
    (folder / "httpov").mkdir(parents=True, exist_ok=True)
    (folder / "httpov" / "config.toml").write_text(text)
    return {"XDG_CONFIG_HOME": str(folder), "HOME": str(folder / "home")}


def test_the_file_sets_what_the_environment_does_not(tmp_path: Path) -> None:
    env = _config(tmp_path, 'broker_url = "redis://farm2:6379/1"\nstorage = "s3://renders/farm2"\n'
                            "lease_seconds = 4\nmax_frames = 500\nkeep_days = 30\n")
    env["HTTPOV_MAX_FRAMES"] = "700"
    found = resolve(env)
    s = found.settings
    assert (s.broker_url, s.state_url, s.storage) == ("redis://farm2:6379/1", "redis://farm2:6379/1",
                                                      "s3://renders/farm2")
    assert (s.lease_seconds, s.max_frames, s.keep_days) == (4.0, 700, 30.0)  # the environment wins
    path = str(tmp_path / "httpov" / "config.toml")
    assert found.origins["storage"] == path and found.origins["max_frames"] == "environment HTTPOV_MAX_FRAMES"
    assert found.origins["state_url"] == "default (the broker URL)" and found.origins["queue"] == "default"
    assert Settings.from_env(env) == s


def test_httpov_config_names_another_file_and_it_must_exist(tmp_path: Path) -> None:
    other = tmp_path / "farm2.toml"
    other.write_text('prefix = "farm2"\n')
    env = _config(tmp_path, 'prefix = "farm1"\n')
    assert Settings.from_env(env).prefix == "farm1"
    assert Settings.from_env({**env, "HTTPOV_CONFIG": str(other)}).prefix == "farm2"
    with pytest.raises(BadInputError, match="HTTPOV_CONFIG='/nowhere.toml': no such file"):
        Settings.from_env({**env, "HTTPOV_CONFIG": "/nowhere.toml"})


def test_without_xdg_config_home_the_file_is_under_home(tmp_path: Path) -> None:
    (tmp_path / ".config" / "httpov").mkdir(parents=True)
    (tmp_path / ".config" / "httpov" / "config.toml").write_text("max_attempts = 5\n")
    assert Settings.from_env({"HOME": str(tmp_path)}).max_attempts == 5


@pytest.mark.parametrize("text, message", [
    ('HTTPOV_STORAGE = "/srv"\n', "unknown setting 'HTTPOV_STORAGE' (did you mean 'storage'?)"),
    ("lease_secs = 3\n", "unknown setting 'lease_secs' (did you mean 'lease_seconds'?)"),
    ('lease_seconds = "soon"\n', "lease_seconds='soon' is not a number"),
    ("max_frames = 2.5\n", "max_frames must be a whole number, got 2.5"),
    ("max_frames = -1\n", "max_frames must be greater than 0"),
    ("storage = 3\n", "storage must be a string, got 3"),
    ('broker_url = "http://u:pw@farm/"\n', "broker_url must be a Redis URL starting with redis://"),
    ("storage = \n", "not valid TOML"),
])
def test_a_bad_file_is_bad_input_naming_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    env = _config(tmp_path, text)
    with pytest.raises(BadInputError) as caught:
        Settings.from_env(env)
    assert str(tmp_path / "httpov" / "config.toml") in str(caught.value)
    assert message in str(caught.value)
    assert "pw" not in str(caught.value)


def test_every_setting_can_come_from_the_file(tmp_path: Path) -> None:
    changed = Settings(broker_url="redis://10.0.0.1:6380/2", state_url="unix:///run/redis.sock", storage="/st",
                       prefix="p", queue="q", cache_dir=Path("/srv/cache"), cache_max_bytes=5, povray="/opt/pov",
                       render_threads=2, lease_seconds=7.5, max_attempts=4, task_time_limit=99, redis_ca="/ca.pem",
                       render_processes=3, render_pool="prefork", celery_config="site.celery", batch_max_bytes=6,
                       batch_max_files=7, batch_max_memory_mb=600,
                       outage_seconds=8.0, max_width=9, max_height=10, max_pixels=11, max_frames=12,
                       max_batches=13, max_scene_bytes=14, max_scene_files=15, max_scene_depth=16, keep_days=2.5,
                       web_accounts=Path("/srv/accounts"), web_token_file=Path("/srv/tokens"), web_tokens="a" * 16,
                       web_behind_proxy=True, web_sign_in_attempts=3, web_sign_in_window=60,
                       server="https://farm.example.com:8443/httpov", token="t" * 16,
                       user_max_processes=4, user_max_jobs=5, user_max_priority=6,
                       webhooks="https://hooks.example.com/a", webhook_secret="s" * 16,
                       webhook_retry_seconds=30.0, notify_hosts="hooks.example.com")
    lines = []
    for f in fields(Settings):
        value = getattr(changed, f.name)
        if isinstance(value, bool):
            lines.append(f"{f.name} = {str(value).lower()}")
        else:
            lines.append(f"{f.name} = {value!r}" if isinstance(value, (int, float)) else f'{f.name} = "{value}"')
    env = _config(tmp_path, "\n".join(lines) + "\n")
    assert Settings.from_env(env) == changed
    assert set(resolve(env).origins.values()) == {str(tmp_path / "httpov" / "config.toml")}
    assert {env_name(f.name) for f in fields(Settings)} == set(changed.to_env())


def test_secrets_are_masked() -> None:
    assert masked("redis://:hunter2@farm:6379/0") == "redis://:***@farm:6379/0"
    assert masked("rediss://render:hunter2@farm:6380/1") == "rediss://render:***@farm:6380/1"
    assert masked("redis://farm/0?password=hunter2&db=1") == "redis://farm/0?password=***&db=1"
    assert masked("redis://farm:6379/0") == "redis://farm:6379/0" and masked("/srv/storage") == "/srv/storage"


def test_httpov_config_prints_each_setting_its_origin_and_no_password(tmp_path: Path) -> None:
    env = _config(tmp_path, 'broker_url = "redis://:hunter2@farm2:6379/0"\nkeep_days = 30\n')
    env["HTTPOV_QUEUE"] = "farm2-queue"
    result = CliRunner().invoke(cli, ["config"], env=env, terminal_width=200)
    print(result.output)
    assert result.exit_code == 0
    assert "hunter2" not in result.output
    lines = {line.split()[0]: line for line in result.output.splitlines()[1:]}
    assert set(lines) == {f.name for f in fields(Settings)}
    assert lines["broker_url"].split()[1:] == ["HTTPOV_BROKER_URL", "redis://:***@farm2:6379/0",
                                               str(tmp_path / "httpov" / "config.toml")]
    assert lines["queue"].split()[2:] == ["farm2-queue", "environment", "HTTPOV_QUEUE"]
    assert lines["keep_days"].split()[2] == "30.0" and lines["max_attempts"].split()[2:] == ["3", "default"]
    assert result.output.splitlines()[0] == f"config file: {tmp_path / 'httpov' / 'config.toml'}"


def test_a_bad_config_file_stops_every_command_with_exit_2(tmp_path: Path) -> None:
    env = _config(tmp_path, "lease_secs = 3\n")
    result = CliRunner().invoke(cli, ["status"], env=env)
    print(result.output)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "unknown setting 'lease_secs'" in result.output


def test_httpov_config_masks_the_web_tokens(tmp_path: Path) -> None:
    env = _config(tmp_path, 'web_token_file = "/srv/tokens"\n')
    env["HTTPOV_WEB_TOKENS"] = "s3cret-" + "x" * 16
    result = CliRunner().invoke(cli, ["config"], env=env, terminal_width=200)
    assert result.exit_code == 0 and "s3cret" not in result.output, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines()[1:]}
    assert lines["web_tokens"].split()[1:] == ["HTTPOV_WEB_TOKENS", "***", "environment", "HTTPOV_WEB_TOKENS"]
    assert lines["web_token_file"].split()[1:3] == ["HTTPOV_WEB_TOKEN_FILE", "/srv/tokens"]
    assert "s3cret" not in repr(Settings.from_env(env))


def test_a_yes_or_no_setting_takes_clicks_words_and_toml_booleans(tmp_path: Path) -> None:
    for raw, value in (("1", True), ("Yes", True), ("on", True), ("off", False), ("False", False), ("0", False)):
        assert Settings.from_env({"HOME": str(tmp_path), "HTTPOV_WEB_BEHIND_PROXY": raw}).web_behind_proxy is value
    assert Settings.from_env(_config(tmp_path, "web_behind_proxy = true\n")).web_behind_proxy is True
    with pytest.raises(BadInputError, match="HTTPOV_WEB_BEHIND_PROXY must be yes or no"):
        Settings.from_env({"HOME": str(tmp_path), "HTTPOV_WEB_BEHIND_PROXY": "maybe"})
    with pytest.raises(BadInputError, match="web_behind_proxy must be yes or no"):
        Settings.from_env(_config(tmp_path, "web_behind_proxy = 1\n"))


def test_httpov_web_takes_its_settings_and_its_options_win(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import httpov.web

    served: list[tuple] = []
    monkeypatch.setattr(httpov.web, "serve", lambda settings, gate, *args, behind_proxy=False, **kwargs: served.append(
        (gate.accounts_file, gate.tokens, gate.limit.attempts, gate.limit.window, behind_proxy)))
    env = _config(tmp_path, "web_sign_in_window = 60\nweb_behind_proxy = true\n")
    env.update(HTTPOV_WEB_TOKENS="t" * 16, HTTPOV_WEB_SIGN_IN_ATTEMPTS="3", HTTPOV_WEB_ACCOUNTS=str(tmp_path / "a"))
    result = CliRunner().invoke(cli, ["web"], env=env)
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli, ["web", "--accounts", str(tmp_path / "b"), "--sign-in-attempts", "7",
                                      "--sign-in-window", "600"], env=env)
    assert result.exit_code == 0, result.output
    assert served == [(tmp_path / "a", ["t" * 16], 3, 60, True), (tmp_path / "b", ["t" * 16], 7, 600, True)]
    env.update(HTTPOV_STATE_URL="redis://127.0.0.1:1/0")  # its audit record is lost: no real farm's log gets it
    added = CliRunner().invoke(cli, ["web-user", "add", "alice", "--password-stdin"], env=env, input="long enough\n")
    assert added.exit_code == 0 and "\nalice:" in (tmp_path / "a").read_text(), added.output


def test_without_home_nothing_is_read_from_tmp_it_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """HOME unset used to put the config file, web accounts, storage and cache under /tmp, where any local user
    can plant them; now the folder each default needs is refused, naming what it was for."""
    for home in ({}, {"HOME": ""}, {"HOME": "relative/home"}):
        with pytest.raises(HomeUnsetError, match="HOME is not set .*config file.* never falls back to /tmp") as caught:
            Settings.from_env(home)
        assert caught.value.exit_code == 2 and "XDG_CONFIG_HOME" in (caught.value.hint or "")
    given = {"XDG_CONFIG_HOME": str(tmp_path), "HTTPOV_STORAGE": str(tmp_path / "st"),
             "HTTPOV_CACHE_DIR": str(tmp_path / "cache")}
    with pytest.raises(HomeUnsetError, match="web accounts"):
        Settings.from_env(given)
    monkeypatch.delenv("HOME", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    with pytest.raises(HomeUnsetError, match="web accounts"):
        Settings()  # the library's own default, from the process's environment
    settings = Settings.from_env({**given, "HTTPOV_WEB_ACCOUNTS": str(tmp_path / "accounts")})
    assert settings.web_accounts == tmp_path / "accounts" and settings.storage == str(tmp_path / "st")
    xdg = Settings.from_env({name: str(tmp_path / name) for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME",
                                                                     "XDG_CACHE_HOME")})
    assert xdg.web_accounts == tmp_path / "XDG_DATA_HOME" / "httpov" / "web-accounts"
    assert xdg.cache_dir == tmp_path / "XDG_CACHE_HOME" / "httpov"


def test_the_cli_without_home_exits_with_the_reason(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["config"], env={"HOME": None, "XDG_CONFIG_HOME": None, "HTTPOV_CONFIG": None})
    assert result.exit_code == 2, result.output
    assert "httpov: error: HOME is not set (nor XDG_CONFIG_HOME)" in result.output
    assert "hint: set HOME" in result.output and "Traceback" not in result.output


def test_a_misspelt_httpov_variable_is_named_with_the_closest_setting(tmp_path: Path) -> None:
    from httpov.settings import unknown_variables

    env = {"HTTPOV_STORGE": "/x", "HTTPOV_QUEUE": "q", "HTTPOV_CONFIG": "/c", "HTTPOV_TEST_REDIS": "1",
           "HTTPOV_ZZZ\x1b": "1", "PATH": "/bin"}
    assert unknown_variables(env) == [
        "HTTPOV_STORGE is no httpov setting and is ignored: did you mean HTTPOV_STORAGE?",
        "HTTPOV_ZZZ\\x1b is no httpov setting and is ignored (`httpov config` lists the settings)"]
    result = CliRunner().invoke(cli, ["config"], env={**_config(tmp_path, ""), "HTTPOV_STORGE": "/x"})
    assert result.exit_code == 0, result.output
    assert "httpov: warning: HTTPOV_STORGE is no httpov setting and is ignored: did you mean HTTPOV_STORAGE?" \
        in result.stderr
