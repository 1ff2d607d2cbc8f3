"""Diagnostics: conversion to ArviZ, R-hat, ESS, MCSE, summaries and plots."""

from ebmppl.diagnostics.arviz import (
    ess,
    from_numpyro,
    mcse,
    plot_rank,
    plot_trace,
    rhat,
    summary,
    to_inference_data,
)

__all__ = ["to_inference_data", "from_numpyro", "summary", "rhat", "ess", "mcse", "plot_trace", "plot_rank"]
