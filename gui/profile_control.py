"""The personal profile the viewer asks critiques with (issue 20): the toolbar's chooser, `ase-viewer --profile`, the
choice remembered, and everything asked again when it changes.

    profiles = ProfileControl(window)
    profiles.set("me")        # critiques (panel, badges, sort "personal") carry `personal_score` by profile "me"
    profiles.set(None)        # the generic score only
    profile_names()           # the profiles on disk: ["me", ...]

The names come from `ase_model.personal.profiles` (torch- and scipy-free). The daemon checks the profile itself (a
missing one or one learnt with another model is its error, shown in the panel).
"""

from __future__ import annotations

from PySide6.QtCore import QObject

from ase_model.personal.profiles import list_profiles, profiles_dir

__all__ = ["ProfileControl", "profile_names", "profiles_dir"]


def profile_names() -> list[str]:
    """The profiles on disk, by name."""
    return [info.name for info in list_profiles()]


class ProfileControl(QObject):
    """Keeps the link, the background pass, the chooser and the settings on one profile.

    Args:
        window: the viewer's MainWindow (its link, toolbar, memory, critiques, shoot and current are used).
    """

    def __init__(self, window):
        super().__init__(window)
        self.w = window

    def set(self, name: str | None) -> None:
        """Ask critiques with a personal profile, or with none. The photo on screen and the folder are asked again:
        the daemon answers from its store, with the personal score added.

        Args:
            name: the profile's name; None or "": the generic score only.
        """
        w = self.w
        name = name or None
        w.toolbar.set_profiles(profile_names(), name)
        if name == w.link.profile:
            return
        w.link.profile = name
        w.memory.set_profile(name)
        w.critiques.forget()
        w.shoot.set_profile(name)
        if w.current is not None:  # the photo stays; its critique is asked again (show_index would not: same photo)
            w.critiques.select(w.current)
            w.critiques.request()
