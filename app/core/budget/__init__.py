"""How many image downloads run at once: the fair adaptive limiter and its Redis twin."""
