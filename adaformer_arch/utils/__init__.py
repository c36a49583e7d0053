"""Small helpers shared by the model and the command line."""
