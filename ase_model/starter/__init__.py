"""The built-in starter model: analytic critic (teacher), grounded dataset generator, training recipe."""
