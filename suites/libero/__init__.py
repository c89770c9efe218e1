"""LIBERO on MuJoCo/robosuite: the suites, their setup and the privileged state the oracle reads."""
