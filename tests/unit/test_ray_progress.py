"""What `harness batch --engine ray` shows while teams run on the cluster: the teams still out there, not the
last one sent (which read "sent to the cluster" for the whole batch)."""

from types import SimpleNamespace

from harness.ray_engine import on_the_cluster


def jobs(*teams):
    return [{"result": SimpleNamespace(team=team)} for team in teams]


def test_one_team_out_is_named():
    assert on_the_cluster(jobs("alpha")) == "1 team on the cluster (running or queued): alpha"


def test_many_teams_out_show_the_first_three_and_a_count():
    assert (on_the_cluster(jobs("a", "b", "c", "d", "e"))
            == "5 teams on the cluster (running or queued): a, b, c and 2 more")
