"""kubia in clusters beyond the walk-through's: in another namespace, and twenty pods in
one view. (The simulated cluster's own parts are tested in test_sim_cluster.py.)"""

from conftest import Sim, lines_of


def test_other_namespace(tmp_path):
    s = Sim(tmp_path)
    s.ns = "shop"
    try:
        s.up(2, "peers")
        s.post_pod("kubia-1", "in shop")
        r = s.wait_view("kubia-0", {"kubia-0": "No data posted yet", "kubia-1": "in shop"})
        assert "kubia-1.kubia.shop.svc.cluster.local: in shop" in r.body
    finally:
        s.remember()
        s.cli("down", "--delete-volumes", check=False)
        assert s.leftovers() == []
        assert s.sanitizer_reports() == []


def test_twenty_pods_in_one_view(sim):
    r = sim.up(20, "peers")
    created = [m.group(1) for m in lines_of(r.stdout, r"^pod/(kubia-\d+) created")]
    assert created == ["kubia-%d" % i for i in range(20)]
    data = {}
    for i in range(0, 20, 3):
        sim.post_pod("kubia-%d" % i, "twenty %d" % i)
    for i in range(20):
        data["kubia-%d" % i] = "twenty %d" % i if i % 3 == 0 else "No data posted yet"
    r = sim.wait_view("kubia-13", data)
    # one request, every pod, in natural order (kubia-2 before kubia-10)
    names = [m.group(1) for m in lines_of(r.body, r"^- (kubia-\d+)\.")]
    assert names == ["kubia-%d" % i for i in range(20)]
    assert r.elapsed < 2.0


    # the fixture's down must leave nothing, even with a pod in back-off
