"""The README's API example runs and its assertions hold."""
import pathlib
import re


def test_readme_api_example_executes():
    text = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, "README has no python example"
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    assert namespace["tv"] > 0  # theta_K after 20 steps differs from theta*
