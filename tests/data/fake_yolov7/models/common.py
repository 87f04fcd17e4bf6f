# A --modules file of the fake YOLOv7 checkout (written for yolodiag's tests): a block of its
# own that its parse_model registers, YOLOv7's Shortcut written again (the same behaviour), and
# a ReOrg that stacks the pixel phases in another order (other values).


class Gate(nn.Module):  # noqa: F821 - nn comes from the --modules namespace
    def __init__(self, c1, c2):
        super().__init__()
        self.conv = Conv(c1, c2, 1, 1)  # noqa: F821

    def forward(self, x):
        return self.conv(x).sigmoid()


class Shortcut(nn.Module):  # noqa: F821
    def __init__(self, dimension=0):
        super().__init__()
        self.d = dimension

    def forward(self, x):
        return x[0] + x[1]


class ReOrg(nn.Module):  # noqa: F821
    def forward(self, x):
        return torch.cat([x[..., ::2, ::2], x[..., ::2, 1::2], x[..., 1::2, ::2],  # noqa: F821
                          x[..., 1::2, 1::2]], 1)
