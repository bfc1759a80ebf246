"""Plots and report sections the drivers share: functions of stored results to figures and
markdown, with no flags and no training (a driver reads its flags, then calls these)."""
