//! Training companion: candle training that logs to tracking and registers models (not built yet; see issue 10).
