"""Run every benchmark in turn; each module's run() prints its own figures."""
import importlib

# Add a module here to have `make bench` run it.
BENCHMARKS = ("benchmarks.planner", "benchmarks.makespan", "benchmarks.scale", "benchmarks.listing",
              "benchmarks.federation")

for name in BENCHMARKS:
    importlib.import_module(name).run()
