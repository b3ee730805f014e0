// Placeholder so the target exists while the PKI tests are written.
