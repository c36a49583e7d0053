"""Whether an output folder can be used before anything is written (for the commands' up-front checks)."""
import os


def folder_problem(folder: str) -> str:
    """Why ``folder`` cannot be used or created as an output folder, or '' (nothing is created here: a run that
    stops at an input error leaves no folder behind)."""
    path = os.path.abspath(folder)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    if not os.path.isdir(path):
        return f'{path} is a file'
    if not os.access(path, os.W_OK | os.X_OK):
        return f'{path} is not writable'
    return ''
