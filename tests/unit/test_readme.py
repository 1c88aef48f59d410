"""The README stays true to the code: every command listed, every extra it names installable, every exit code."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

from httpov import errors
from httpov.cli import cli

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_every_command_is_in_the_readme():
    assert sorted(name for name in cli.commands if f"httpov {name}" not in README) == []


def test_every_extra_the_readme_names_exists_and_flower_is_installable():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    named = set(re.findall(r"httpov\[(\w+)\]", README))
    assert named and named <= set(extras), named - set(extras)
    assert any(dep.startswith("flower") for dep in extras["flower"]) and "flower" in named


def test_the_exit_code_table_has_every_error_code():
    table = set(int(code) for code in re.findall(r"^\| (\d+) \|", README, re.M))
    codes = {cls.exit_code for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, Exception)
             and hasattr(cls, "exit_code")}
    assert codes <= table


def test_the_configuration_table_names_every_setting():
    from dataclasses import fields

    from httpov.settings import CONFIG_ENV, Settings, env_name

    table = set(re.findall(r"^\| `(HTTPOV_\w+)` \|", README, re.M))
    assert {env_name(f.name) for f in fields(Settings)} | {CONFIG_ENV} == table


def test_the_python_api_example_compiles_and_calls_what_farm_and_job_have():
    import ast

    from httpov import Farm, Job

    blocks = re.findall(r"^```python\n(.*?)^```", README, re.M | re.S)
    assert blocks and "from httpov import Farm" in blocks[0]
    tree = ast.parse(blocks[0])
    called = {(node.value.id, node.attr) for node in ast.walk(tree)
              if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)}
    kinds = {"Farm": Farm, "farm": Farm, "preview": Job, "final": Job}
    assert {(name, attr) for name, attr in called if name in kinds and not hasattr(kinds[name], attr)} == set()
    assert {name for name, _ in called} >= {"farm", "final"}


def test_the_metrics_scrape_config_and_panels_name_what_the_farm_exposes():
    """README's Prometheus section: its scrape config is valid YAML for httpov web's /metrics with a bearer token, and
    every metric, label and label value its panel list queries is one a scrape answers."""
    import yaml
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from httpov.metrics import families
    from httpov.store.records import FarmCounts

    section = README.split("### Metrics: Prometheus", 1)[1].split("\n### ", 1)[0]
    (config,) = re.findall(r"^```yaml\n(.*?)^```", section, re.M | re.S)
    (scrape,) = yaml.safe_load(config)["scrape_configs"]
    assert scrape["metrics_path"] == "/metrics" and scrape["authorization"]["type"] == "Bearer"
    assert scrape["static_configs"][0]["targets"]

    panels = [(line, query) for line in re.findall(r"^- (.+)$", section.split("A dashboard's panels:", 1)[1], re.M)
              for query in re.findall(r"`([^`]+)`", line)]  # a panel's query and an alert's
    assert len(panels) >= 8, panels
    counts = FarmCounts(jobs=[("running", "", 1)], batches=[("q.pool.gpu", 1, 1, 1)], counters={},
                        nodes={"a": 100.0})

    class Farm:
        def collect(self):
            return families(counts, live_within=10.0, now=100.0)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Farm())
    samples = [s for f in text_string_to_metric_families(generate_latest(registry).decode()) for s in f.samples]
    names = {s.name for s in samples}
    values = {(label, value) for s in samples for label, value in s.labels.items()}
    for title, query in panels:
        used = set(re.findall(r"\bhttpov_\w+", query))
        assert used and used <= names, (title, used - names)
        for label, wanted in re.findall(r'(\w+)=~?"([^"]+)"', query):
            for value in wanted.split("|"):
                assert (label, value) in values, (title, label, value)
        for label in re.findall(r"by \((\w+)\)", query):
            assert any(name == label for name, _ in values), (title, label)
