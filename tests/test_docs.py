"""The measured results the README and docs cite are in the repository, not only in someone's working tree."""
import fnmatch
import re
import subprocess
from pathlib import Path

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
