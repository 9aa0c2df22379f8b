"""Synthetic Vietnamese licence-plate generator used to train the plate recogniser."""
