"""How well the service time is learnt from occupancy alone (server/rules/service_rate.py).

    python -m bench.service_rate [--hours 8] [--seeds 3]

A simulated lobby (lobby_sim.lobby: two windows, the standards' service mix, mean 3.8 minutes) is counted every
second the way the agent reports (every change, and every 10 s); miscounts of one person lasting 3-8 s are added
at several rates. Prints the learnt mean service time per run; JSON on the last line.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics

from lobby_sim.lobby import SERVICE_MIX, Lobby, LobbyPlan
from server.rules.service_rate import ServiceLearner

KEEPALIVE_S = 10
WINDOWS = 2


def run(hours: float, seed: int, miscount_every_s: float | None) -> float:
    noise = random.Random(seed + 1000)
    plan = LobbyPlan(
        windows=WINDOWS,
        max_windows=WINDOWS,
        base_per_min=0.45,
        peak_per_min=0.6,
        peak_from_min=0,
        peak_to_min=hours * 60,
    )
    lobby = Lobby(plan, rng=random.Random(seed))
    learner = ServiceLearner()
    last, error, until = None, 0, 0
    for second in range(int(hours * 3600)):
        lobby.advance(1 / 60)
        if miscount_every_s and second >= until and noise.random() < 1 / miscount_every_s:
            error, until = noise.choice((-1, 1)), second + noise.randint(3, 8)
        if second >= until:
            error = 0
        count = max(0, lobby.waiting + error)
        if count != last or second % KEEPALIVE_S == 0:
            learner.observe(count, float(second), WINDOWS)
            last = count
    return learner.estimate() if learner.served else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=8.0)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    truth = sum(share * minutes for share, minutes in SERVICE_MIX)
    results: dict[str, object] = {"true_service_min": round(truth, 2), "hours": args.hours}
    for every in (None, 600, 120, 30):
        learnt = [run(args.hours, seed, every) for seed in range(args.seeds)]
        name = "no_miscounts" if every is None else f"miscount_every_{every}s"
        error = (statistics.mean(learnt) - truth) / truth * 100
        print(f"{name:24s} learnt {', '.join(f'{v:.2f}' for v in learnt)} min (mean error {error:+.0f}%)")
        results[name] = {"learnt_min": [round(v, 2) for v in learnt], "mean_error_pct": round(error, 1)}
    print(json.dumps(results))


if __name__ == "__main__":
    main()
