"""Procedural indoor scenes with exact metric depth: test, training and demo data (not a sensor model)."""
from mde_ros.synthetic.scenes import (Box, CameraPose, Cylinder, Item, Material, Scene, SceneFrame, Sphere,
                                      approach_sequence, camera_path, make_scene, render_frame)
from mde_ros.synthetic.textures import TEXTURES

__all__ = ["Box", "CameraPose", "Cylinder", "Item", "Material", "Scene", "SceneFrame", "Sphere", "TEXTURES",
           "approach_sequence", "camera_path", "make_scene", "render_frame"]
