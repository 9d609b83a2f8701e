"""The accuracy study of issue 4: RANP against its baselines, trained from scratch."""
