"""Entry-point discovery: the installed example package, and every way a plugin can be broken."""

import pytest

from scanner.detectors import Result, discover


def test_installed_third_party_plugin_is_discovered_and_loaded():
    plugins = {p.name: p for p in discover()}
    example = plugins.get("example-ela-brightness")
    assert example is not None, "install it first: pip install ./tests/example_plugin"
    info = example.describe()
    assert info["status"] == "loaded"
    assert info["package"] == "scanner-example-plugin 0.1.0"
    assert info["needs"] == ["ela"] and len(info["model_hash"]) == 64


@pytest.mark.parametrize(
    "name, target, message",
    [
        ("test-x", "no_such_module:Detector", "ModuleNotFoundError"),
        ("test-fails-to-load", "sample_detectors:FailsToLoad", "model.onnx is missing"),
        ("test-red2", "sample_detectors:WrongName", "called 'not-the-entry-point-name'"),
        ("test-unknown-needs", "sample_detectors:UnknownNeeds", "unknown views ['hologram']"),
        ("test-not-a-detector", "sample_detectors:NotADetector", "is not a scanner.detectors"),
        ("test-x", "sample_detectors:Missing", "AttributeError"),
    ],
)
def test_broken_plugin_is_reported_not_raised(registry, name, target, message):
    registry.add(name, target)
    registry.add("test-red", "sample_detectors:Redness")
    plugins = {p.name: p for p in discover()}
    broken = plugins[name]
    assert not broken.loaded and message in broken.error
    assert broken.describe()["status"] == "failed"
    assert plugins["test-red"].loaded, "one broken plugin must not take others down"


def test_only_loads_the_named_detectors(registry):
    registry.add("test-red", "sample_detectors:Redness")
    registry.add("test-broken", "no_such_module:Detector")
    assert [p.name for p in discover(only=["test-red"])] == ["test-red"]


def test_results_that_break_the_contract_are_named():
    assert Result.from_score(0.7, 0.5).label == "fake"
    assert Result.from_score(0.3, 0.5).problem() is None
    assert "not a probability" in Result(label="fake", score=1.5).problem()
    assert "not a probability" in Result(label="real", score=float("nan")).problem()
    assert "needs a reason" in Result(label="not-applicable").problem()
    assert "is not one of" in Result(label="maybe", score=0.5).problem()
