"""tickwire: a stream processor for trading data (MT5 ticks and signals)."""
