import json

import pytest

from moabench.runs.records import (
    CorruptRecordError,
    RunConfig,
    RunRecord,
    finished_keys,
    load_records,
    provenance,
    read_record,
    write_record,
)


def make_record(seed: int = 0, **overrides) -> RunRecord:
    config = RunConfig(algorithm="ls", task="zdt1", preference=[0.5, 0.5], seed=seed)
    fields = dict(
        key=config.key(),
        config=config,
        paradigm="analytic",
        status="ok",
        objectives=[0.1, 0.9],
        objective_space={
            "names": ["f1", "f2"],
            "maximize": [False, False],
            "ideal": [0, 0],
            "nadir": [1, 1],
        },
    )
    return RunRecord(**(fields | overrides))


def test_config_key_is_stable_and_distinguishes_configs():
    a = RunConfig(algorithm="ls", task="zdt1", preference=[0.5, 0.5], seed=0)
    b = RunConfig(algorithm="ls", task="zdt1", preference=[0.5, 0.5], seed=1)
    assert a.key() == RunConfig.model_validate(json.loads(a.model_dump_json())).key()
    assert a.key() != b.key()
    assert len(a.key()) == 16


def test_write_then_read_round_trips_and_leaves_no_temporary_file(tmp_path):
    record = make_record()
    path = write_record(record, tmp_path)
    assert path.name == f"{record.key}.json"
    assert read_record(path) == record
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    assert finished_keys(tmp_path) == {record.key}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not a readable JSON file"),
        ("[1, 2]", "expected a JSON object"),
        ('{"schema_version": 99}', "schema_version 99"),
        ('{"schema_version": 1, "key": "x"}', "field 'config'"),
    ],
)
def test_corrupt_records_are_named_and_skipped(tmp_path, content, message):
    good = write_record(make_record(), tmp_path)
    bad = tmp_path / "deadbeefdeadbeef.json"
    bad.write_text(content)
    with pytest.raises(CorruptRecordError, match=message):
        read_record(bad)
    loaded = load_records(tmp_path)
    assert [r.key for r in loaded.records] == [good.stem]
    assert loaded.skipped[0][0] == bad and message in loaded.skipped[0][1]


def test_a_record_whose_key_does_not_match_its_config_is_corrupt(tmp_path):
    record = make_record()
    path = write_record(record, tmp_path)
    data = json.loads(path.read_text())
    data["config"]["seed"] = 5
    path.write_text(json.dumps(data))
    with pytest.raises(CorruptRecordError, match="does not match its config"):
        read_record(path)


def test_provenance_names_versions_commit_and_hardware():
    info = provenance()
    assert info["packages"]["torch"] and info["packages"]["pymoo"]
    assert info["hardware"]["cpu_count"] >= 1
    assert "git_commit" in info and "python" in info


def test_records_in_subfolders_and_records_sharing_a_key(tmp_path):
    """Contributors drop their records in subfolders; an identical copy is ignored, a different
    record with a taken key is reported (naming both files) and the first one is kept."""
    ours, theirs, copy = tmp_path / "a-ours", tmp_path / "b-theirs", tmp_path / "c-copy"
    write_record(make_record(seed=0), ours)
    write_record(make_record(seed=1), theirs)
    write_record(make_record(seed=0), copy)  # identical
    clash = make_record(seed=0, objectives=[0.2, 0.8])
    write_record(clash, theirs)
    loaded = load_records(tmp_path)
    assert sorted(r.config.seed for r in loaded.records) == [0, 1]
    assert next(r for r in loaded.records if r.config.seed == 0).objectives == [0.1, 0.9]
    ((path, reason),) = loaded.skipped
    assert path.parent == theirs and "same key as" in reason and str(ours) in reason


def test_records_from_gpus_get_their_own_leaderboard_table(tmp_path):
    from moabench.evaluation.frame import device_class

    cpu = make_record(provenance={"hardware": {"gpus": []}})
    gpu = make_record(provenance={"hardware": {"gpus": ["NVIDIA H100 80GB HBM3"]}})
    assert device_class(cpu) == "cpu" and device_class(gpu) == "NVIDIA H100 80GB HBM3"
