"""The sample commerce source schema, its six built-in feeds and the demo data generator."""
