"""Training of the seven WineMeUp model families on the UCI Wine Quality data.

The core (data loading, evaluation protocols, model families, reports) imports no BentoML;
:mod:`training.store` is the adapter that writes the model store, and :mod:`training.cli`
is the command line (``python -m training``, console script ``winemeup-train``).
"""
