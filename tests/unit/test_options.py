"""Submit options (httpov.options): each rule once against SubmitOptions, then each surface's words for a bad value:
the CLI names its flag, the API and the web form their field. No Redis: nothing gets past the options."""
from __future__ import annotations

import io
import os
import re
from typing import Any

import pytest
from click.testing import CliRunner

from httpov.cli import cli
from httpov.options import OptionError, SubmitOptions, parse_priority
from httpov.settings import Settings

SETTINGS = Settings(task_time_limit=600)


def _refused(raw: dict[str, object]) -> OptionError:
    with pytest.raises(OptionError) as caught:
        SubmitOptions.parse(raw, SETTINGS)
    return caught.value


def test_nothing_given_is_every_default() -> None:
    assert SubmitOptions.parse({}, SETTINGS) == SubmitOptions()
    assert SubmitOptions().priority == 5 and SubmitOptions().radiosity_cache == "auto"


def test_typed_values_and_form_text_give_the_same_options() -> None:
    typed = {"name": "shot 1", "frames": 10, "count": 2, "priority": 9, "radiosity_cache": "shared", "time_limit": 600}
    text = {key: f" {value} " if not isinstance(value, str) or key == "radiosity_cache" else value
            for key, value in typed.items()}
    assert SubmitOptions.parse(typed, SETTINGS) == SubmitOptions.parse(text, SETTINGS) == SubmitOptions(**typed)


def test_blank_form_fields_and_none_are_not_given() -> None:
    blank = {"frames": "", "count": "  ", "priority": "", "radiosity_cache": " ", "user": None, "pool": None}
    assert SubmitOptions.parse(blank, SETTINGS) == SubmitOptions()


@pytest.mark.parametrize("field", ["frames", "count", "slices", "slice_rows", "max_processes", "max_nodes"])
@pytest.mark.parametrize("value", [0, -4, "0"])
def test_counts_must_be_at_least_1(field: str, value: object) -> None:
    assert _refused({field: value}).errors == {field: f"{field} must be at least 1, got {int(value)}"}
    assert SubmitOptions.parse({field: 1}, SETTINGS) == SubmitOptions(**{field: 1})  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["three", "2.5", 2.5, True, [3]])
def test_numbers_must_be_whole(value: object) -> None:
    assert "frames must be a whole number, got " in _refused({"frames": value}).errors["frames"]


@pytest.mark.parametrize("value, ok", [(0, True), (9, True), (-1, False), (10, False), ("12", False)])
def test_priority_is_0_to_9(value: object, ok: bool) -> None:
    if ok:
        assert SubmitOptions.parse({"priority": value}, SETTINGS).priority == value
        assert parse_priority(str(value)) == value  # `httpov priority` and the API's priority call: the same rule
    else:
        assert _refused({"priority": value}).errors["priority"].startswith("priority must be between 0 and 9, got ")
        with pytest.raises(OptionError, match="between 0 and 9"):
            parse_priority(value)


def test_the_time_limit_is_capped_by_the_farms_task_time_limit() -> None:
    assert SubmitOptions.parse({"time_limit": 600}, SETTINGS).time_limit == 600
    for value in (0, 601):
        said = _refused({"time_limit": value}).errors["time_limit"]
        assert said == f"time_limit must be between 1 and 600 s (HTTPOV_TASK_TIME_LIMIT), got {value}"


def test_the_radiosity_cache_is_one_of_its_modes() -> None:
    for mode in ("auto", "off", "shared"):
        assert SubmitOptions.parse({"radiosity_cache": mode}, SETTINGS).radiosity_cache == mode
    assert _refused({"radiosity_cache": "always"}).errors == {
        "radiosity_cache": "radiosity_cache must be one of auto, off, shared, got 'always'"}


def test_photons_is_one_of_its_modes() -> None:
    assert SubmitOptions().photons == "shared"
    for mode in ("shared", "off"):
        assert SubmitOptions.parse({"photons": f" {mode} "}, SETTINGS).photons == mode
    assert _refused({"photons": "always"}).errors == {"photons": "photons must be one of shared, off, got 'always'"}


def test_slices_or_rows_per_slice_not_both() -> None:
    error = _refused({"slices": 2, "slice_rows": 32})
    assert error.errors == {"slice_rows": "give exactly one of slices and slice_rows"}


@pytest.mark.parametrize("name, words", [("", "empty"), ("a/b", "path separator"), ("a\\b", "path separator"),
                                         ("bell\a", "control character"), ("x" * 201, "at most 200")])
def test_a_name_is_display_text_by_plan_check_name(name: str, words: str) -> None:
    error = _refused({"name": name})
    assert words in error.errors["name"] and "{" not in error.errors["name"]
    assert SubmitOptions.parse({"name": "Ünïcode {name} (v2)"}, SETTINGS).name == "Ünïcode {name} (v2)"


@pytest.mark.parametrize("user, ok", [("alice", True), ("a.b@c-d_e", True), ("x/../y", False), ("_lead", False),
                                      ("a" * 65, False), ("", False), ("{0}", False)])
def test_a_user_is_a_plain_name(user: str, ok: bool) -> None:
    if ok:
        assert SubmitOptions.parse({"user": user}, SETTINGS).user == user
    else:
        said = _refused({"user": user}).errors["user"]
        assert said.startswith("user must be 1-64 letters") and f"got {user!r}"[:58] in said


@pytest.mark.parametrize("pool, ok", [("big", True), ("gpu_2-a", True), ("a b", False), ("-x", False), ("", False)])
def test_a_pool_is_a_pool_name_as_httpov_pools_is(pool: str, ok: bool) -> None:
    if ok:
        assert SubmitOptions.parse({"pool": pool}, SETTINGS).pool == pool
    else:
        assert _refused({"pool": pool}).errors["pool"].startswith("pool: a pool name is 1-64 letters")


def test_any_povray_is_true_or_false() -> None:
    assert SubmitOptions.parse({"any_povray": True}, SETTINGS).any_povray is True
    assert "true or false" in _refused({"any_povray": "yes"}).errors["any_povray"]


def test_every_problem_is_said_at_once_each_beside_its_field() -> None:
    error = _refused({"frames": "three", "priority": 12, "pool": "a b", "count": 2})
    assert list(error.errors) == ["frames", "priority", "pool"]
    assert str(error) == "; ".join(error.errors.values())
    flags = error.said(lambda field: "--" + field.replace("_", "-"))
    assert flags.startswith("--frames must be a whole number") and "; --priority must be between 0 and 9" in flags


def test_a_key_that_is_no_option_is_a_bug_not_a_users_error() -> None:
    with pytest.raises(TypeError, match="frame_count"):
        SubmitOptions.parse({"frame_count": 3}, SETTINGS)


# --- each surface words the same problem its own way -------------------------------------------------------------

def _hermetic_env(tmp_path) -> dict[str, str | None]:
    """No HTTPOV_* variable or config file of the caller's: the defaults."""
    env: dict[str, str | None] = {name: None for name in os.environ if name.startswith("HTTPOV_")}
    return {**env, "XDG_CONFIG_HOME": str(tmp_path)}


@pytest.mark.parametrize("command, args, flag", [
    ("submit", ["--priority", "12"], "--priority must be between 0 and 9, got 12"),
    ("submit", ["--max-nodes", "0"], "--max-nodes must be at least 1, got 0"),
    ("submit", ["--radiosity-cache", "sometimes"], "--radiosity-cache must be one of auto, off, shared"),
    ("submit", ["--slices", "2", "--slice-rows", "32"], "give exactly one of --slices and --slice-rows"),
    ("render", ["--frames", "0"], "--frames must be at least 1, got 0"),
])
def test_the_cli_names_its_flag_and_exits_2(tmp_path, command: str, args: list[str], flag: str) -> None:
    result = CliRunner().invoke(cli, [command, str(tmp_path / "scene.zip"), *args], env=_hermetic_env(tmp_path))
    print(result.output)
    assert result.exit_code == 2
    assert result.output.startswith(f"httpov: error: {flag}") and "Traceback" not in result.output


class _Pools:
    """A store that knows only the live render pools (the form lists them)."""

    def live_pools(self, within: float) -> set[str]:
        return {"gpu"}


class _NoSubmit:
    """A client whose submit must not be reached: the options are refused first."""

    settings = SETTINGS

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("bad options reached Client.submit")


def _post(path: str, fields: dict[str, Any], accept: str) -> Any:
    from httpov.web import Gate, Web, create_app

    client = _NoSubmit()
    app = create_app(Web(client=client, source=None, gate=Gate(None, ["tok"])))  # type: ignore[arg-type]
    client.store = _Pools()  # type: ignore[attr-defined]  # after create_app: no sessions nor tokens to keep
    data = {**fields, "scene": (io.BytesIO(b"PK"), "scene.zip")}
    return app.test_client().post(path, data=data, content_type="multipart/form-data",
                                  headers={"Authorization": "Bearer tok", "Accept": accept})


def test_the_api_answers_json_with_the_field_name() -> None:
    answer = _post("/api/jobs", {"priority": "12", "radiosity_cache": "always"}, "application/json")
    assert answer.status_code == 400
    body = answer.get_json()
    assert body["field"] == "priority" and body["errors"] == {
        "priority": "priority must be between 0 and 9, got 12",
        "radiosity_cache": "radiosity_cache must be one of auto, off, shared, got 'always'"}


def test_the_web_form_shows_the_error_beside_its_field() -> None:
    page = _post("/submit", {"frames": "three"}, "text/html")
    assert page.status_code == 400
    html = page.get_data(as_text=True)
    beside = re.search(r'id="frames-error">([^<]*)<', html)
    assert beside and beside.group(1) == "frames must be a whole number, got &#39;three&#39;"
    assert '<option value="gpu">gpu</option>' in html  # the live pools, to choose from


@pytest.mark.parametrize("value", ["auto", " AUTO "])
def test_slices_auto_leaves_the_count_to_the_farm(value: str) -> None:
    assert SubmitOptions.parse({"slices": value}, SETTINGS).slices == "auto"
    assert _refused({"slices": "many"}).errors == {"slices": "slices must be a whole number or auto, got 'many'"}
