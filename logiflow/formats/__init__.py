"""Date and time formats: ISO-like, and every date and time names its time zone (the site's, TIME_ZONE)."""
