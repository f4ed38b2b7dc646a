"""Operations, the top floor: the event-flow dashboard, its minute samples, the /metrics collectors and the
health commands. It may import every app of ours; none imports it (only logiflow's settings and URLs name it)."""
