"""docs/operations.md: its scrape config and alert rules are valid YAML and name only
metrics that /metrics really exposes (a renamed metric breaks this test, not an alert)."""

from __future__ import annotations

import re

import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import REPO

DOC = (REPO / "docs" / "operations.md").read_text()
BLOCKS = re.findall(r"```yaml\n(.*?)```", DOC, re.S)


def test_the_scrape_config_and_three_alert_rules_parse() -> None:
    docs = [yaml.safe_load(b) for b in BLOCKS]
    scrape = next(d for d in docs if "scrape_configs" in d)
    assert {j["job_name"] for j in scrape["scrape_configs"]} == {
        "trainforge-api",
        "trainforge-workers",
    }
    rules = next(d for d in docs if "groups" in d)["groups"][0]["rules"]
    assert len(rules) == 3 and all(r["alert"] and r["expr"] for r in rules)


def test_every_metric_the_alerts_use_is_exposed(client: TestClient) -> None:
    ids = [client.post("/v1/jobs", json={"spec": {"dataset": {"source": {
        "kind": "builtin", "name": "iris"}}}}).json()["id"] for _ in range(2)]  # fmt: skip
    client.post(f"/v1/jobs/{ids[0]}/cancel")
    exposed = set()
    for family in text_string_to_metric_families(client.get("/metrics").text):
        exposed.add(family.name)
        exposed.update(s.name for s in family.samples)
    # Families with no samples yet still have their TYPE line: names of histograms too.
    exposed.update(re.findall(r"^# TYPE (\S+)", client.get("/metrics").text, re.M))
    rules = next(yaml.safe_load(b) for b in BLOCKS if "groups" in b)["groups"][0]["rules"]
    used = {m for r in rules for m in re.findall(r"\btrainforge_[a-z_]+", r["expr"])}
    assert used
    for name in used:
        base = re.sub(r"_(bucket|count|sum|total)$", "", name)
        assert name in exposed or base in exposed, (name, sorted(exposed))
