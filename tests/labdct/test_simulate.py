"""Forward model: Bragg geometry against a closed form, Laue focusing, structure factors."""

import numpy as np
import pytest

from matrestore._validate import InputError
from matrestore.labdct.crystal import reflections
from matrestore.labdct.geometry import Geometry, read_geometry_m
from matrestore.labdct.simulate import HC_KEV_A, SampleConfig, analytic_spot, make_sample, project, simulate


def rotation_taking(a, b):
    """Rotation matrix taking unit vector a to unit vector b (Rodrigues)."""
    a, b = np.asarray(a, float) / np.linalg.norm(a), np.asarray(b, float) / np.linalg.norm(b)
    v, c = np.cross(a, b), float(a @ b)
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx / (1 + c)


def closed_form(theta_deg, phi_deg, lsd, px, centre):
    """Point grain at the origin, beam along x: the spot lies at radius Lsd tan 2θ in the detector plane,
    in the direction (cos φ, sin φ) of the plane normal's (y, z) projection."""
    t2 = np.deg2rad(2 * theta_deg)
    y, z = lsd * np.tan(t2) * np.cos(np.deg2rad(phi_deg)), lsd * np.tan(t2) * np.sin(np.deg2rad(phi_deg))
    return centre[0] - z / px, centre[1] + y / px


def oriented(theta, phi, hkl=(1, 1, 0)):
    th, ph = np.deg2rad(theta), np.deg2rad(phi)
    g = np.array([-np.sin(th), np.cos(th) * np.cos(ph), np.cos(th) * np.sin(ph)])
    return rotation_taking(hkl, g)


def centred_geometry(theta, phi, lss=100.0, lsd=100.0, px=0.01, n=128, blur=0.0):
    # put the expected spot in the middle of a small detector
    t2 = np.deg2rad(2 * theta)
    y, z = lsd * np.tan(t2) * np.cos(np.deg2rad(phi)), lsd * np.tan(t2) * np.sin(np.deg2rad(phi))
    cen = (n / 2 + z / px, n / 2 - y / px)
    return Geometry(lss=lss, lsd=lsd, pixel_mm=px, shape=(n, n), centre=cen, beamstop=None, blur_px=blur)


@pytest.mark.parametrize("theta,phi", [(5.0, 0.0), (4.0, 60.0), (6.5, 200.0)])
def test_point_grain_spot_where_the_closed_form_puts_it(theta, phi):
    U = oriented(theta, phi)
    geo = centred_geometry(theta, phi)
    exp = closed_form(theta, phi, geo.lsd, geo.pixel_mm, geo.beam_centre)
    row, col, E = analytic_spot(U, 0.0, (1, 1, 0), "Fe", geo)
    assert abs(row - exp[0]) < 1e-6 and abs(col - exp[1]) < 1e-6
    d = reflections("Fe")["a"] / np.sqrt(2)
    assert E == pytest.approx(HC_KEV_A / (2 * d * np.sin(np.deg2rad(theta))), rel=1e-9)
    # the full forward model of a tiny grain puts its spot there too
    smp = make_sample(SampleConfig(material="Fe", diameter_mm=0.01, height_mm=0.01, grain_size_mm=0.01, voxel_mm=0.002),
                      geo, orientations=U[None], seeds=np.zeros((1, 3)))
    img = project(smp, geo, 0.0).astype(np.float64)
    win = img[int(exp[0]) - 6 : int(exp[0]) + 7, int(exp[1]) - 6 : int(exp[1]) + 7]
    assert win.sum() > 0.5 * img.sum() > 0
    rr, cc = np.indices(img.shape)
    near = (np.abs(rr - exp[0]) < 7) & (np.abs(cc - exp[1]) < 7)
    w = img * near
    assert (w * rr).sum() / w.sum() == pytest.approx(exp[0], abs=0.5)
    assert (w * cc).sum() / w.sum() == pytest.approx(exp[1], abs=0.5)


def test_rotation_moves_the_spot_as_the_rotated_normal_says():
    theta, phi = 5.0, 30.0
    U = oriented(theta, phi)
    geo = centred_geometry(theta, phi, n=512)
    a = analytic_spot(U, 0.0, (1, 1, 0), "Fe", geo)
    b = analytic_spot(U, 0.3, (1, 1, 0), "Fe", geo)
    assert a is not None and b is not None and a != b
    # rotating by ω about z rotates the plane normal; the closed form of the rotated normal agrees
    g = np.array([-np.sin(np.deg2rad(theta)), np.cos(np.deg2rad(theta)) * np.cos(np.deg2rad(phi)),
                  np.cos(np.deg2rad(theta)) * np.sin(np.deg2rad(phi))])
    w = np.deg2rad(0.3)
    g2 = np.array([[np.cos(w), -np.sin(w), 0], [np.sin(w), np.cos(w), 0], [0, 0, 1]]) @ g
    th2 = np.rad2deg(np.arcsin(-g2[0]))
    ph2 = np.rad2deg(np.arctan2(g2[2], g2[1]))
    exp = closed_form(th2, ph2, geo.lsd, geo.pixel_mm, geo.beam_centre)
    assert b[0] == pytest.approx(exp[0], abs=1e-6) and b[1] == pytest.approx(exp[1], abs=1e-6)


def spot_moments(img, phi_deg):
    rr, cc = np.indices(img.shape)
    w = img / img.sum()
    r0, c0 = (w * rr).sum(), (w * cc).sum()
    # radial direction on the detector: (y, z) = (cos φ, sin φ) -> (col, -row)
    u = np.array([-np.sin(np.deg2rad(phi_deg)), np.cos(np.deg2rad(phi_deg))])  # (row, col) of radial
    v = np.array([u[1], -u[0]])
    dr, dc = rr - r0, cc - c0
    rad = dr * u[0] + dc * u[1]
    tan = dr * v[0] + dc * v[1]
    return np.sqrt((w * rad**2).sum()), np.sqrt((w * tan**2).sum())


def grain_spot(lss, lsd, theta=5.0, phi=0.0, size=0.1, px=0.005):
    U = oriented(theta, phi)
    geo = centred_geometry(theta, phi, lss=lss, lsd=lsd, px=px, n=160)
    smp = make_sample(SampleConfig(diameter_mm=size, height_mm=size, grain_size_mm=size, voxel_mm=0.004), geo,
                      orientations=U[None], seeds=np.zeros((1, 3)))
    return project(smp, geo, 0.0).astype(np.float64)


def test_laue_focusing_compresses_radially_and_doubles_tangentially():
    size, px = 0.1, 0.005
    rad, tan = spot_moments(grain_spot(100.0, 100.0, size=size, px=px), 0.0)
    # tangential = z here: a cylinder of height h has std h/sqrt(12); magnification (Lss+Lsd)/Lss = 2
    assert tan == pytest.approx(2 * size / np.sqrt(12) / px, rel=0.1)
    assert rad < 0.25 * tan
    # out of focusing (Lsd = 2 Lss) the radial extent is no longer compressed
    rad2, tan2 = spot_moments(grain_spot(100.0, 200.0, size=size, px=px), 0.0)
    assert rad2 > 3 * rad
    assert tan2 == pytest.approx(3 * size / np.sqrt(12) / px, rel=0.1)


def test_structure_factors_and_families():
    al, fe = reflections("Al"), reflections("Fe")
    assert al["families"] == [(1, 1, 1), (2, 0, 0), (2, 2, 0), (3, 1, 1)]
    assert fe["families"] == [(1, 1, 0), (2, 0, 0), (2, 1, 1), (2, 2, 0)]
    assert len(fe["hkl"]) == 12 + 6 + 24 + 12
    assert np.all(np.diff(fe["d"]) <= 1e-12)  # sorted by decreasing d
    assert np.all(fe["F2"] > 0) and fe["F2"][0] > fe["F2"][-1]  # form factor falls with sin(theta)/lambda


def test_simulate_stack_and_spot_count():
    geo = Geometry(shape=(128, 128), pixel_mm=0.068, beamstop=(56, 72, 56, 72), centre=(64, 64))
    res = simulate(3, step_deg=3.0, geometry=geo, sample=SampleConfig(diameter_mm=0.6, height_mm=0.3, seed=1))
    assert res.spots.shape == (3, 128, 128) and res.spots.dtype == np.float32
    assert np.all(res.spots[:, 56:72, 56:72] == 0)  # beam stop
    assert res.spots.max() > 0
    assert not np.allclose(res.spots[0], res.spots[1])  # rotation moves the spots


def test_bad_geometry_and_sample():
    with pytest.raises(InputError):
        Geometry(lss=-1)
    with pytest.raises(InputError):
        Geometry(shape=(64, 64), beamstop=(10, 100, 0, 5))
    with pytest.raises(InputError):
        make_sample(SampleConfig(diameter_mm=5.0, height_mm=5.0, voxel_mm=0.001), Geometry())


def test_read_geometry_file(tmp_path):
    p = tmp_path / "input_main.m"
    p.write_text("Lsam2det = 100%99\nLsam2sou = [-100 0 0]\nrot_start = 180;\nrot_step = -3;\nbinning = 2\n"
                 "dety0 = 512.4836*2+1\ndetz0 = 512.0230*2+1\npixelysize = 0.034167\ndetysize = 2048\n"
                 "detzsize = 2048\nbeamstop = [840 1220 840 1220]\n")
    geo, info = read_geometry_m(p)
    assert geo.shape == (1024, 1024) and geo.pixel_mm == pytest.approx(0.068334)
    assert geo.lss == 100 and geo.lsd == 100
    assert info == {"rot_start": 180.0, "rot_step": -3.0}
    assert geo.beamstop == (420, 611, 420, 611)
    with pytest.raises(InputError):
        read_geometry_m(tmp_path / "missing.m")
