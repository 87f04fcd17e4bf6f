# A --modules file of the fake Ultralytics checkout (written for yolodiag's tests): a block of its
# own that its parse_model registers, Ultralytics' Concat written again (the same behaviour), and
# a CBFuse that adds its inputs without resizing them (other values).


class Gate(nn.Module):  # noqa: F821 - nn comes from the --modules namespace
    def __init__(self, c1, c2):
        super().__init__()
        self.conv = Conv(c1, c2, 1, 1)  # noqa: F821

    def forward(self, x):
        return self.conv(x).sigmoid()


class Concat(nn.Module):  # noqa: F821
    def __init__(self, dimension=1):
        super().__init__()
        self.d = dimension

    def forward(self, x):
        return torch.cat(x, self.d)  # noqa: F821


class CBFuse(nn.Module):  # noqa: F821
    def __init__(self, idx):
        super().__init__()
        self.idx = idx

    def forward(self, xs):
        *sources, target = xs
        return sum(parts[self.idx[j]].mean() for j, parts in enumerate(sources)) + target
