"""`python -m chaos` (`make chaos`): start the stack, drive it under the seeded faults, wait for quiet, check.

Prints `name=value` lines (README, "make chaos"); exits 1 naming the invariants that failed, 2 when the run
itself could not be set up, 0 when every invariant held.
"""

from __future__ import annotations

import logging
import random
import re
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from types import FrameType

from chaos.api import REQUEST_TIMEOUT_S, Fleet, Traffic, set_up_fleet, settle, wait_until_serving
from chaos.checks import Figure, directory_before_settling, measure, refused_topic, wait_for_quiet
from chaos.config import Config
from chaos.evidence import log_errors
from chaos.faults import KINDS, FaultRunner, runnable_kinds, schedule
from chaos.hostile import Injector
from chaos.stack import Stack

logger = logging.getLogger("chaos")
SETTLE_ROUNDS = 3  # open the late accounts and replay their dead letters, then wait for quiet, at most this often
SETTLE_QUIET_S = 120.0
LEAK_LINE = r"chaos: the PDF renderer leaked \d+ MB; process (\d+)"


def main() -> int:
    config = Config.from_env()
    config.run_dir.mkdir(parents=True, exist_ok=True)
    _log_to(config.run_dir / "chaos.log")
    signal.signal(signal.SIGTERM, _interrupt)
    for name, value in (("seed", config.seed), ("seconds", int(config.seconds)), ("run_dir", config.run_dir),
                        ("broker", config.broker)):
        print(f"{name}={value}", flush=True)
    if config.broker == "kafka":
        print(f"kafka_nodes={config.kafka_nodes}", flush=True)
    if config.why_not_kafka:
        print(f"chaos: on Tansu, not Apache Kafka, because {config.why_not_kafka} (a broker pause can livelock a "
              "consumer group on Tansu 0.6.0)", flush=True)
    stack = Stack(config)
    notes: list[str] = []
    try:
        figures = _run(config, stack, notes)
    except Exception:
        logger.exception("the run itself failed; logs in %s", stack.log_dir)
        return 2
    finally:
        stack.stop()
    return _report(figures, stack, notes)


def _run(config: Config, stack: Stack, notes: list[str]) -> list[Figure]:
    kinds, skipped = runnable_kinds(config.faults or KINDS, broker=config.broker, kafka_nodes=config.kafka_nodes)
    for kind, why in skipped.items():
        print(f"chaos: {kind} skipped: {why}", flush=True)
    faults = schedule(config.seed, config.seconds, kinds, kafka_nodes=config.kafka_nodes)
    stack.start()
    wait_until_serving(stack.web_url, timeout=120)
    fleet = set_up_fleet(stack.web_url, random.Random(config.seed))
    assert stack.broker is not None
    injector = Injector(stack.kafka_client())
    runner = FaultRunner(stack, injector, faults)
    traffic = Traffic(stack.web_url, fleet, config.seed, config.clients, config.think_seconds)
    started = time.monotonic()
    logger.info("traffic and faults for %.0fs; logs in %s", config.seconds, stack.log_dir)
    traffic.start(started + config.seconds)
    runner.run(started=started, until=started + config.seconds)
    traffic.join(timeout=REQUEST_TIMEOUT_S + 5)
    down = stack.ensure_running()
    unacknowledged = injector.close(timeout=60)
    logger.info("faults over; waiting (at most %.0fs) for the stack to go quiet", config.quiet_seconds)
    quiet, waited, _ = wait_for_quiet(stack.database_url, stack.kafka_client(), timeout=config.quiet_seconds,
                                    notes=notes)
    directory = directory_before_settling(stack.database_url)  # no dead letter replayed yet
    settled: Counter[str] = Counter()
    for _ in range(SETTLE_ROUNDS):  # a refused account (customer not in the directory yet) is tried again
        outcomes = _settle(stack, fleet)
        settled.update(outcomes)
        if not quiet or not outcomes:
            break  # nothing left to settle, or a stack that does not go quiet: no second long wait
        logger.info("settled the late accounts (%s); waiting for quiet again", _counts(outcomes))
        quiet, more, _ = wait_for_quiet(stack.database_url, stack.kafka_client(), timeout=SETTLE_QUIET_S,
                                          notes=notes)
        waited += more
    stack.stop()  # nothing moves while the invariants are read
    return [
        *directory,
        *measure(stack.database_url, injector.delivered, broker_generation=stack.broker_generation),
        *refused_topic(runner.windows, scheduled=runner.counts["refuse_topic"]),
        *(Figure(f"faults_{kind}", "skipped" if kind in skipped else runner.counts[kind]) for kind in KINDS),
        *_pdf_leak(stack.log_dir / "celery.log"),
        Figure("backends_terminated", runner.backends_terminated),
        Figure("hostile_unacknowledged", unacknowledged + len(injector.refused)),
        Figure("exits_on_their_own", _exits(stack) or "none"),
        Figure("still_down_after_faults", ",".join(down) or "none"),
        Figure("api_outcomes", _counts(traffic.outcomes)),
        Figure("settled", _counts(settled) or "none"),
        Figure("quiet", int(quiet)),
        Figure("seconds_to_quiet", round(waited)),
    ]


def _report(figures: list[Figure], stack: Stack, notes: list[str]) -> int:
    """The figures, then on a failure the evidence from the logs, and last (where a CI log's tail shows them)
    the failed invariants, what the quiet wait found left and the seed to run again."""
    for figure in figures:
        print(f"{figure.name}={figure.value}", flush=True)
    failed = [figure for figure in figures if figure.failed]
    if not failed:
        print("chaos: every invariant held", flush=True)
        return 0
    for line in log_errors(stack.log_dir):
        print(f"chaos: evidence {line}", flush=True)
    print(f"chaos: logs in {stack.log_dir} (the driver's own: {stack.config.run_dir / 'chaos.log'})", flush=True)
    for line in notes:
        print(f"chaos: {line}", flush=True)
    for figure in failed:
        print(f"chaos: FAILED {figure.name}={figure.value}: {figure.failed}", flush=True)
    print(f"chaos: run again with CHAOS_SEED={stack.config.seed} CHAOS_SECONDS={stack.config.seconds:.0f} "
          f"CHAOS_BROKER={stack.config.broker}", flush=True)
    return 1


def _settle(stack: Stack, fleet: Fleet) -> Counter[str]:
    try:
        return settle(stack.web_url, fleet)
    except RuntimeError as error:  # the API kept failing: the invariants will say what was left unsettled
        logger.warning("could not settle the late accounts: %s", error)
        return Counter({"settle:api_failed": 1})


def _counts(counts: Counter[str]) -> str:
    return ",".join(f"{k}:{n}" for k, n in sorted(counts.items()))


def _exits(stack: Stack) -> str:
    return ",".join(
        f"{name}:{service.exits_on_its_own}/codes:{'+'.join(map(str, sorted(set(service.exit_codes))))}"
        for name, service in stack.services.items() if service.exits_on_its_own
    )


def _pdf_leak(celery_log: Path) -> list[Figure]:
    """Leaking renders, and the renderer processes they ran in: more processes than Celery's pool size
    means the pool recycled its leaking children."""
    leaks = re.findall(LEAK_LINE, celery_log.read_text(errors="replace")) if celery_log.exists() else []
    return [Figure("faults_pdf_leak", len(leaks)), Figure("pdf_leaking_processes", len(set(leaks)))]


def _log_to(path: Path) -> None:
    logger.setLevel(logging.INFO)
    to_stdout = logging.StreamHandler(sys.stdout)
    to_stdout.setFormatter(logging.Formatter("chaos: %(message)s"))
    to_file = logging.FileHandler(path)
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(to_stdout)
    logger.addHandler(to_file)
    logger.propagate = False


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    sys.exit(main())
