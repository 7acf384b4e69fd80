"""The engine kernel: the engine, task records and futures, dependencies, submitters."""
