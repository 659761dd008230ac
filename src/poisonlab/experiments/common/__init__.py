"""What every experiment kind shares: config blocks, cached models, measurements."""
