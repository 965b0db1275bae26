"""Bayesian joint inversion of a whole SR-EELS spectrum image (issue 5).

Layers, one module each (data flows one way):

``params``      the physical and nuisance parameters and the profiles they imply
``priors``      small prior callables, settable from TOML
``data``        detector whitening (PSF deconvolution), binning, fit regions, variance
``model``       image-level prediction from precomputed Fourier kernels
``likelihood``  Gaussian detector likelihood with per-row linear amplitudes marginalised
``optimize``    lmfit MAP and covariance
``sample``      emcee sampling with measured convergence
``crlb``        Fisher information and Cramer-Rao bounds
``results``     summary.json, posterior.nc, profiles.csv with bands
``figures``     corner plot, profiles with bands, residual image
``commands``    ``sreels fit --method bayes``
"""
