"""Deep Feedback Control (Meulemans et al., NeurIPS 2021) in PyTorch.

The package exports nothing at the top level; import from the modules:

* :mod:`neurodfc.config`: typed, frozen experiment configs (``load_config``);
* :mod:`neurodfc.network` and :mod:`neurodfc.components`: the network and the equations of
  the closed loop (neurons, output target, controller, feedback initialisation);
* :mod:`neurodfc.system`: ``DFCSystem``, the output Jacobian, Lemma 1, the linearised
  closed loop;
* :mod:`neurodfc.solve`: ``simulate`` with the reference Euler scheme or continuous-time
  solvers; :mod:`neurodfc.results`: simulations as ``xarray.Dataset``;
* :mod:`neurodfc.methods`: BP, DFA, DFC, DFC-SS, DFC-SSA, MN, GN and feedback learning;
  :mod:`neurodfc.training` and :mod:`neurodfc.sweep`: training runs and sweeps;
* :mod:`neurodfc.analysis`: alignment, Conditions 1-3, stability and convergence;
  :mod:`neurodfc.report` and :mod:`neurodfc.figures`: reports and figures of results;
* :mod:`neurodfc.strong`: Strong-DFC; :mod:`neurodfc.data`: the data sets.
"""
