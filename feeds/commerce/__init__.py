"""The sample commerce source schema, its seven built-in feeds and the demo data generator."""
