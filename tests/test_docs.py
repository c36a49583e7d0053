"""The measured results the README and docs cite are in the repository, not only in someone's working tree."""
import fnmatch
import re
import subprocess
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / 'README.md', REPO / 'experiments' / 'README.md', *sorted((REPO / 'docs').glob('*.md'))]
# the tracked result folders: .gitignore keeps experiments/ (where training runs write) out of git but for these
TRACKED = re.findall(r'^!/experiments/([\w-]+)/$', (REPO / '.gitignore').read_text(), re.MULTILINE)
CITED = re.compile(rf'experiments/(?:{"|".join(TRACKED)})(?:/[\w.*-]+)*')


def tracked_files():
    """Files git tracks in this checkout; the files on disk where there is no git (e.g. an unpacked archive)."""
    try:
        out = subprocess.run(['git', 'ls-files'], cwd=REPO, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {str(p.relative_to(REPO)) for p in REPO.rglob('*') if p.is_file()}
    return set(out.splitlines())


def test_every_cited_result_is_tracked():
    files = tracked_files()
    folders = {str(Path(f).parent) for f in files} | {str(p) for f in files for p in Path(f).parents}
    missing = []
    for doc in DOCS:
        for cited in sorted(set(CITED.findall(doc.read_text()))):
            path = cited.rstrip('.')
            found = ([f for f in files if fnmatch.fnmatch(f, path)] if '*' in path
                     else path in files or path.rstrip('/') in folders)
            if not found:
                missing.append(f'{doc.relative_to(REPO)}: {cited}')
    assert not missing, 'cited but not in git (add it, or its folder to .gitignore\'s list):\n' + '\n'.join(missing)


def test_the_readme_python_example_runs(tmp_path, monkeypatch):
    """README, "From Python": the block runs as written from the repository root and writes the x4 image."""
    text = (REPO / 'README.md').read_text()
    block = text.split('### From Python\n\n```python\n', 1)[1].split('```', 1)[0]
    out = tmp_path / 'baby_x4.png'
    assert "'baby_x4.png'" in block
    monkeypatch.chdir(REPO)
    exec(compile(block.replace("'baby_x4.png'", repr(str(out))), 'README.md', 'exec'), {})
    lr = cv2.imread(str(REPO / 'demo' / 'Set5' / 'LR_bicubic' / 'X4' / 'baby.png'))
    sr = cv2.imread(str(out))
    assert sr.shape == (lr.shape[0] * 4, lr.shape[1] * 4, 3)
    # a real super-resolution of the image, not noise: close to the bicubic upscaling, closer to the HR image
    hr = cv2.imread(str(REPO / 'demo' / 'Set5' / 'HR' / 'baby.png')).astype(float)
    bicubic = cv2.resize(lr, sr.shape[1::-1], interpolation=cv2.INTER_CUBIC).astype(float)
    assert np.abs(sr - hr).mean() < np.abs(bicubic - hr).mean()
