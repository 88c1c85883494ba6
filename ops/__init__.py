"""Operations: CLI, settings, metrics, embedded broker, dashboards."""
