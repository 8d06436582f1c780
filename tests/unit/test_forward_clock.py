"""The worker's own split: hooks on the predictor's top-level torch modules (harness.probe.forward_clock), in
process, on a fake clock that moves only when the fake predictor says it worked."""

import sys

import pytest

torch = pytest.importorskip("torch")

from harness.probe import forward_clock  # noqa: E402
from harness.probe.forward_clock import ForwardClock  # noqa: E402

from test_worker import TEAMS, ask, worker  # noqa: E402,F401  (the worker fixture over a socketpair)


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class Slow(torch.nn.Module):
    """A forward that takes `seconds` of the fake clock, and calls `inner` if set: another top-level module,
    held in a plain list so that it is not a submodule of this one."""

    def __init__(self, clock, seconds, inner=None):
        super().__init__()
        self.clock, self.seconds, self.calls, self.layer = clock, seconds, [inner] if inner else [], torch.nn.Linear(2, 2)

    def forward(self, x):
        self.clock.now += self.seconds
        return self.calls[0](x) if self.calls else self.layer(x)


class TwoModelPredictor:
    """predict(): 30 ms of host work, the encoder's forward (10 ms) twice, which calls the head (5 ms) inside."""

    def __init__(self, clock):
        self.clock = clock
        self.head = Slow(clock, 0.005)
        self.encoder = Slow(clock, 0.010, inner=self.head)

    def predict(self, batch):
        self.clock.now += 0.030
        for _ in range(2):
            self.encoder(torch.zeros(1, 2))
        return batch


def test_the_clock_counts_time_inside_top_level_forwards_once_and_removes_its_hooks(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(forward_clock.time, "perf_counter", clock)
    predictor = TwoModelPredictor(clock)
    timer = ForwardClock.around(predictor)
    assert {id(m) for m in timer.modules} == {id(predictor.encoder), id(predictor.head)}   # both are top level
    with timer:
        predictor.predict([1])
    # by hand: each encoder call is 10 ms plus the head's 5 ms inside it, the head not counted twice: 2 * 15 ms
    assert timer.seconds == pytest.approx(0.030) and timer.calls == 2 and timer.note == ""
    assert not predictor.encoder._forward_hooks and not predictor.encoder._forward_pre_hooks
    assert not predictor.head._forward_hooks


def test_a_predictor_without_torch_modules_gets_a_note_not_a_zero():
    class NoModel:
        def predict(self, batch):
            return batch

    timer = ForwardClock.around(NoModel())
    assert timer.modules == [] and "no torch module" in timer.note


def test_the_worker_profiles_one_batch_untimed_and_says_when_no_forward_ran(worker):   # noqa: F811
    ask(worker, op="load", task="csl", device="cpu", options={}, seed=1, precision="free", threads=1,
        team_dir=str(TEAMS / "ok_team"), predictor="predictor:Predictor")
    reply = ask(worker, op="profile", batch=[{"id": 3, "abst": "摘要", "keyword": ["词"]}])
    profile = reply["profile"]
    # ok_team holds an Embedding its predict() never calls
    assert profile["modules"] == 1 and profile["forward_calls"] == 0 and profile["forward_s"] == 0.0
    assert profile["predict_s"] > 0 and "none of its top-level modules' forward" in profile["note"]


def test_the_worker_profile_counts_a_real_forward(worker, tmp_path):   # noqa: F811
    (tmp_path / "linear_predictor.py").write_text(
        "import torch\n"
        "class Predictor:\n"
        "    def __init__(self, task, device):\n"
        "        self.model = torch.nn.Linear(4, 2)\n"
        "    def predict(self, examples):\n"
        "        out = self.model(torch.zeros(len(examples), 4)).argmax(-1).tolist()\n"
        "        return [{'id': e['id'], 'label': str(o)} for e, o in zip(examples, out)]\n", encoding="utf-8")
    sys.modules.pop("linear_predictor", None)
    ask(worker, op="load", task="csl", device="cpu", options={}, seed=1, precision="free", threads=1,
        team_dir=str(tmp_path), predictor="linear_predictor:Predictor")
    profile = ask(worker, op="profile", batch=[{"id": 1}, {"id": 2}])["profile"]
    assert profile["modules"] == 1 and profile["forward_calls"] == 1 and profile["note"] == ""
    assert 0 < profile["forward_s"] <= profile["predict_s"]
    ask(worker, op="prepare", device="cpu")
    assert "profile before load" in ask(worker, op="profile", batch=[])["error"]     # prepare dropped the model
