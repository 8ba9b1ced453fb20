"""The logic behind stepup's views; the views only parse requests and render results."""
