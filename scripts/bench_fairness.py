"""Benchmark (not a test): how jobs at the same priority share render processes, and one job's throughput.

    python scripts/bench_fairness.py               # 2 nodes x 2 render processes, 1 s batches
    python scripts/bench_fairness.py --big 200 --small 4 --delay 5 --sleep 1

Runs on a private redis-server (httpov.local_farm.embedded_redis) with the stub renderer (scripts/povray-stub.sh,
sleeping --sleep seconds per frame), so it measures scheduling, not povray. Three runs on the same nodes:
  alone   the small job (--small one-frame batches) by itself: its time from submit to done;
  single  the big job (--big one-frame batches) by itself: batches per second from submit to done;
  mixed   the big job, then --delay s later the small job at the same priority (by the same user, or by
          --small-user): the small job's time from its submit to done, against its time alone, and when the big
          job ended;
  share   (--share-jobs N) N jobs of --share-batches batches submitted together: each one's batches done when the
          first of them ends, against an equal share.
  users   (--users-jobs N) user alice's N jobs and user bob's one, --share-batches batches each, submitted together:
          each user's batches done when bob's job ends, against an equal share between the two users.
  names   (--users-names N) issue #24's attack: mallory submits N jobs of 2 x --share-batches batches, victim one of
          --share-batches, together; victim's share of the batches done (of the render processes' time) when their
          job ends. Twice: with the N jobs under N invented names (what a free-text `user` allowed), and owned by
          mallory's account, as the owner of a job is now (the local operator names it here: the library stands in
          for a web API token, whose jobs are the account's whatever `user` they send), and a third time with one
          owner and victim's fair-share weight 2 (`httpov limits set victim --weight 2`). Mallory's jobs are
          cancelled after each.

    python scripts/bench_fairness.py --baseline ee51abf --turns 3   # one job's throughput, this code against REV

With --baseline REV, only the single run, from a checkout of REV (a git worktree, given this folder's bench scripts
and this checkout's sandbox.py, which runs the stub renderer since 732577c) and from this checkout, taking turns
--turns times: one job's throughput before and after, measured in the same run.
"""
from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from httpov.celery import make_app  # noqa: E402
from httpov.client import Client  # noqa: E402
from httpov.local_farm import embedded_redis, start_worker, stop_worker  # noqa: E402
from httpov.settings import Settings  # noqa: E402

sys.path.insert(0, str(ROOT / "scripts"))
from bench import stub_copy, stub_scene  # noqa: E402


def wait_done(client: Client, job_ids: list[str], timeout: float = 1800) -> dict[str, float]:
    """When (time.monotonic) each job finished; every one must end 'done'."""
    ended: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while len(ended) < len(job_ids):
        for job_id in job_ids:
            if job_id not in ended and client.store.record(job_id).get("finished"):
                ended[job_id] = time.monotonic()
                state = client.store.state(job_id)
                if state != "done":
                    raise SystemExit(f"job {job_id} ended {state}: {client.store.record(job_id).get('error', '')}")
        if time.monotonic() > deadline:
            raise SystemExit("jobs did not finish in time")
        time.sleep(0.05)
    return ended


def share(client: Client, scene: Path, jobs: int) -> None:
    """`jobs` jobs submitted one after the other: batches each had done when the first one ended."""
    ids = [client.submit(scene, count=1, name=f"share{i}").spec.id for i in range(jobs)]
    while not any(client.store.record(job_id).get("finished") for job_id in ids):
        time.sleep(0.05)
    done = [len(client.store.batches(job_id)["done"]) for job_id in ids]
    mean = sum(done) / len(done)
    worst = max(abs(d - mean) / mean for d in done) if mean else 0.0
    print(f"share: {jobs} jobs, batches done when the first ended: {done}; furthest from an equal share "
          f"{100 * worst:.0f}%", flush=True)
    wait_done(client, ids)


def users(client: Client, scene: Path, jobs: int) -> None:
    """alice's `jobs` jobs and bob's one, submitted together: each user's batches done when bob's job ends."""
    alices = [client.submit(scene, count=1, name=f"alice{i}", user="alice").spec.id for i in range(jobs)]
    bob = client.submit(scene, count=1, name="bob", user="bob").spec.id
    wait_done(client, [bob])
    alice = [len(client.store.batches(job_id)["done"]) for job_id in alices]
    bob_done = len(client.store.batches(bob)["done"])
    mean = (sum(alice) + bob_done) / 2
    print(f"users: when bob's job ended, alice's {jobs} jobs had {sum(alice)} batches done ({alice}), bob's "
          f"{bob_done}; each user {100 * abs(bob_done - mean) / mean:.0f}% from an equal share "
          f"(a share per job would give bob 1/{jobs + 1})", flush=True)
    wait_done(client, alices)


def names(client: Client, scene: Path, big: Path, jobs: int) -> None:
    """issue #24's attack, with invented names and by owner (see the docstring): victim's share of the processes."""
    for mode in ("invented names", "one owner", "one owner, victim's weight 2"):
        users = [f"mallory{i}" if mode == "invented names" else "mallory" for i in range(jobs)]
        if "weight" in mode:
            client.set_limits("victim", weight=2)
        mallory = [client.submit(big, count=1, name=f"mallory{i}", user=user).spec.id for i, user in enumerate(users)]
        victim = client.submit(scene, count=1, name="victim", user="victim").spec.id
        wait_done(client, [victim])
        theirs = sum(len(client.store.batches(job_id)["done"]) for job_id in mallory)
        mine = len(client.store.batches(victim)["done"])
        print(f"names: {jobs} jobs under {mode}: when victim's job ended, victim had {mine} batches done, mallory "
              f"{theirs}: victim's share of the render processes {100 * mine / (mine + theirs):.0f}%", flush=True)
        for job_id in mallory:
            client.cancel(job_id)
        deadline = time.monotonic() + 60
        while any(client.store.running(job_id) for job_id in mallory) and time.monotonic() < deadline:
            time.sleep(0.05)


def baseline(args: argparse.Namespace) -> None:
    """The single run from a checkout of args.baseline and from this one, taking turns (see the docstring)."""
    here = Path(__file__).resolve().parent
    with tempfile.TemporaryDirectory(prefix="httpov-baseline-") as tmp_name:
        tree = Path(tmp_name) / "tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(tree), args.baseline],
                       check=True)
        try:
            for name in ("bench_fairness.py", "bench.py", "povray-stub.sh"):
                shutil.copy2(here / name, tree / "scripts" / name)
            # the sandbox that runs the stub renderer (a script: its #! interpreter bound too, since 732577c)
            shutil.copy2(ROOT / "httpov" / "worker" / "sandbox.py", tree / "httpov" / "worker" / "sandbox.py")
            rates: dict[str, list[float]] = {args.baseline: [], "this checkout": []}
            command = ["--skip", "alone", "mixed", "--nodes", str(args.nodes), "--processes", str(args.processes),
                       "--big", str(args.big), "--sleep", str(args.sleep)]
            for turn in range(args.turns):
                for label, root in ((args.baseline, tree), ("this checkout", ROOT)):
                    done = subprocess.run([sys.executable, str(root / "scripts" / "bench_fairness.py"), *command],
                                          cwd=root, capture_output=True, text=True)
                    found = re.search(r"single: .* ([\d.]+) batches/s", done.stdout)
                    if done.returncode or not found:
                        raise SystemExit(f"{label}: the single run failed:\n{done.stdout}{done.stderr}")
                    rates[label].append(float(found.group(1)))
                    print(f"turn {turn + 1}, {label}: {found.group(1)} batches/s", flush=True)
            ideal = args.nodes * args.processes / args.sleep
            for label, values in rates.items():
                print(f"{label}: median {statistics.median(values):.2f} batches/s of {ideal:.2f} ideal "
                      f"({', '.join(f'{v:.2f}' for v in values)})", flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--processes", type=int, default=2, help="render processes per node")
    parser.add_argument("--big", type=int, default=200, help="batches of the big job")
    parser.add_argument("--small", type=int, default=4, help="batches of the small job")
    parser.add_argument("--delay", type=float, default=5.0, help="seconds between the big and the small submit")
    parser.add_argument("--sleep", type=float, default=1.0, help="seconds per batch (the stub's sleep)")
    parser.add_argument("--share-jobs", type=int, default=0, help="jobs submitted together for the share run")
    parser.add_argument("--share-batches", type=int, default=100)
    parser.add_argument("--small-user", help="the small job's user in the mixed run (default: the big job's, yours)")
    parser.add_argument("--users-jobs", type=int, default=0, help="alice's jobs in the users run (bob has one)")
    parser.add_argument("--users-names", type=int, default=0,
                        help="mallory's jobs in the names run (victim has one): invented names, then one owner")
    parser.add_argument("--skip", nargs="*", default=[], choices=["alone", "single", "mixed"])
    parser.add_argument("--baseline", metavar="REV", help="compare one job's throughput with this git revision")
    parser.add_argument("--turns", type=int, default=3, help="turns of each checkout with --baseline")
    args = parser.parse_args()
    if args.baseline:
        baseline(args)
        return
    with tempfile.TemporaryDirectory(prefix="httpov-fair-") as tmp_name:
        tmp = Path(tmp_name)
        with embedded_redis(tmp) as url:
            stub = stub_copy(tmp, args.sleep)
            settings = Settings(broker_url=url, state_url=url, storage=str(tmp / "storage"), prefix="fair",
                                queue="fair", cache_dir=tmp / "cache", povray=str(stub))
            client = Client(settings, make_app(settings))
            big, small = stub_scene(tmp, "big", args.big), stub_scene(tmp, "small", args.small)
            nodes = [start_worker(settings.with_(cache_dir=tmp / f"cache-{i}"), args.processes, f"fair{i}",
                                  tmp / f"worker-{i}.log") for i in range(args.nodes)]
            try:
                warm = client.submit(small, count=1, name="warm")  # nodes up, scene cached
                wait_done(client, [warm.spec.id])
                alone_s = 0.0
                if "alone" not in args.skip:
                    t0 = time.monotonic()
                    alone = client.submit(small, count=1, name="alone").spec.id
                    alone_s = wait_done(client, [alone])[alone] - t0
                    print(f"alone: {args.small}-batch job in {alone_s:.2f} s", flush=True)
                if "single" not in args.skip:
                    t0 = time.monotonic()
                    single = client.submit(big, count=1, name="single").spec.id
                    single_s = wait_done(client, [single])[single] - t0
                    rate = args.big / single_s
                    print(f"single: {args.big}-batch job in {single_s:.2f} s, {rate:.2f} batches/s "
                          f"(ideal {args.nodes * args.processes / args.sleep:.2f})", flush=True)
                if "mixed" not in args.skip:
                    t0 = time.monotonic()
                    big_id = client.submit(big, count=1, name="big").spec.id
                    time.sleep(args.delay)
                    t1 = time.monotonic()
                    small_id = client.submit(small, count=1, name="small", user=args.small_user).spec.id
                    ended = wait_done(client, [big_id, small_id])
                    mixed_s = ended[small_id] - t1
                    ratio = f" ({mixed_s / alone_s:.1f}x alone)" if alone_s else ""
                    print(f"mixed: small job submitted {args.delay:g} s after the big one finished in "
                          f"{mixed_s:.2f} s{ratio}; the big job took {ended[big_id] - t0:.2f} s and ended "
                          f"{ended[big_id] - ended[small_id]:.2f} s after the small one", flush=True)
                if args.share_jobs:
                    share(client, stub_scene(tmp, "share", args.share_batches), args.share_jobs)
                if args.users_jobs:
                    users(client, stub_scene(tmp, "users", args.share_batches), args.users_jobs)
                if args.users_names:
                    names(client, stub_scene(tmp, "victim", args.share_batches),
                          stub_scene(tmp, "mallory", 2 * args.share_batches), args.users_names)
            finally:
                for node in nodes:
                    stop_worker(node)


if __name__ == "__main__":
    main()
