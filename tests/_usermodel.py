"""A user's model file, as the tests write it into a temporary current directory (mynet.py): the example
network of ``examples/mynet.py`` plus a few factories that exercise the adaptation and error paths."""

from __future__ import annotations

from pathlib import Path

EXAMPLE = (Path(__file__).resolve().parents[1] / "examples" / "mynet.py").read_text()

EXTRA = """

class AvgNet(nn.Module):  # no num_classes argument: the head is found and replaced
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, 1, 1)
        self.pool = nn.AvgPool2d(2)
        self.conv2 = nn.Conv2d(8, 8, 3, 1, 1)
        self.head = nn.Linear(8, 1000)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv(x)))
        x = torch.relu(self.conv2(x))
        return self.head(x.mean((2, 3)))


def avgnet():
    return AvgNet()


def nohead():
    return nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def broken():
    raise RuntimeError("factory exploded")
"""

MYNET = EXAMPLE + EXTRA
