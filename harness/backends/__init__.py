"""Generation backends, registered under the entry-point group `harness.backends`."""
