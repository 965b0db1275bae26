"""O-O distances from crystal structures: invariants and literature values."""

import numpy as np
import pytest
from ase.build import bulk

from sreels.errors import SreelsInputError
from sreels.structures import oo


def test_rutile_mean_tio6_edge_matches_literature():
    # DESIGN: rutile mean TiO6 edge 0.2768 nm (a = 4.594 A, c = 2.959 A, O x = 0.3048)
    d = oo.oo_distances(oo.load_builtin("TiO2_rutile"), "Ti", "rutile")
    assert d.oo_octahedral_edge_nm == pytest.approx(0.2768, abs=2e-4)
    assert d.edges_nm.size == 12 * d.n_octahedra
    # edge-sharing structure: the two definitions differ
    assert abs(d.oo_nearest_nm - d.oo_octahedral_edge_nm) > 1e-3


def test_rocksalt_edges_equal_a_over_sqrt2():
    atoms = bulk("MgO", "rocksalt", a=4.2)
    d = oo.oo_distances(atoms, "Mg", "MgO")
    assert d.oo_octahedral_edge_nm == pytest.approx(0.42 / np.sqrt(2), rel=1e-9)
    assert d.oo_octahedral_edge_std_nm == pytest.approx(0.0, abs=1e-12)
    assert d.oo_nearest_nm == pytest.approx(d.oo_octahedral_edge_nm, rel=1e-9)


def test_perovskite_and_cubic_scaling():
    d = oo.oo_distances(oo.load_builtin("SrTiO3"), "Ti", "SrTiO3")
    assert d.oo_octahedral_edge_nm == pytest.approx(0.39053 / np.sqrt(2), rel=1e-6)
    atoms = oo.load_builtin("SrTiO3")
    atoms.set_cell(atoms.cell * 1.05, scale_atoms=True)
    d2 = oo.oo_distances(atoms, "Ti", "SrTiO3 x1.05")
    assert d2.oo_octahedral_edge_nm == pytest.approx(1.05 * d.oo_octahedral_edge_nm, rel=1e-9)


def test_corundum_octahedra():
    d = oo.oo_distances(oo.load_builtin("Al2O3_corundum"), "Al", "corundum")
    assert d.n_octahedra == 12
    assert 0.26 < d.oo_octahedral_edge_nm < 0.28


def test_guess_cation():
    assert oo.guess_cation(oo.load_builtin("SrTiO3")) == "Ti"
    assert oo.guess_cation(oo.load_builtin("TiO2_rutile")) == "Ti"


def test_nasicon_study_numbers():
    """The computed end members (rescaled to the published LiTi2(PO4)3 cell) against the study's
    0.272 / 0.289 nm (Yamamoto 2014, Sect. 3.3).  LiTi2(PO4)3 agrees within twice its budget.
    Li3Ti2(PO4)3 comes out below 0.289 nm, and the expansion below the study's 17 pm, as in the
    independent CHGNet trial of issue 15 (13.3-15.0 pm raw over five arrangements): the
    difference is a finding reported by validation/15, kept here as a two-sided regression."""
    from sreels.structures import nasicon

    raw0 = oo.oo_distances(oo.load_builtin("LiTi2(PO4)3"), "Ti").oo_octahedral_edge_nm
    raw2 = oo.oo_distances(oo.load_builtin("Li3Ti2(PO4)3"), "Ti").oo_octahedral_edge_nm
    (r0, r2), (e0, e2) = nasicon.r_oo_nm_from_x(np.array([0.0, 2.0]))
    assert raw0 == pytest.approx(nasicon.load_series().edge_nm[0])
    assert abs(r0 - oo.STUDY_EDGE_NM["LiTi2(PO4)3"]) < 2 * e0
    assert -0.007 < r2 - oo.STUDY_EDGE_NM["Li3Ti2(PO4)3"] < 0.0
    assert 0.010 < raw2 - raw0 < 0.016  # Li insertion (Ti4+ -> Ti3+) expands the octahedra, < 17 pm


def test_missing_nasicon_cif_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(oo, "data_dir", lambda: tmp_path)
    with pytest.raises(SreelsInputError, match="no CIF"):
        oo.load_builtin("LiTi2(PO4)3")


def test_bad_inputs(tmp_path):
    bad = tmp_path / "broken.cif"
    bad.write_text("data_x\n_cell_length_a banana\nloop_\n_atom_site_label\n")
    with pytest.raises(SreelsInputError, match="broken.cif"):
        oo.read_structure(bad)
    with pytest.raises(SreelsInputError, match="does not exist"):
        oo.read_structure(tmp_path / "nope.cif")
    with pytest.raises(SreelsInputError, match="no oxygen"):
        oo.oo_distances(bulk("Cu", "fcc", a=3.6), "Cu", "Cu")
    with pytest.raises(SreelsInputError, match="no 'Zr'"):
        oo.oo_distances(oo.load_builtin("SrTiO3"), "Zr", "SrTiO3")
    with pytest.raises(SreelsInputError, match="unknown built-in"):
        oo.load_builtin("unobtainium")


def test_every_builtin_cif_names_its_source():
    for b in (*oo.BUILTIN.values(), *oo.NASICON.values(), *oo.COMPUTED.values()):
        text = (oo.data_dir() / b.filename).read_text()
        assert "Source" in text.split("data_")[0], b.filename
        assert b.source


@pytest.mark.parametrize("name,cation,a_ang", [("MgO", "Mg", 4.2136), ("MnO", "Mn", 4.436), ("NiO", "Ni", 4.1769)])
def test_rocksalt_builtins(name, cation, a_ang):
    d = oo.oo_distances(oo.load_builtin(name), oo.BUILTIN[name].cation, name)
    assert d.cation == cation
    assert d.oo_octahedral_edge_nm == pytest.approx(a_ang / 10 / np.sqrt(2), rel=1e-9)
    assert d.oo_nearest_nm == pytest.approx(d.oo_octahedral_edge_nm, rel=1e-9)


def test_anatase_octahedron():
    # Horn et al. (1972): a = 3.7842, c = 9.5146 A, O z = 0.2081 -> Ti-O 4 x 1.934 + 2 x 1.980 A
    atoms = oo.load_builtin("TiO2_anatase")
    assert atoms.get_chemical_formula() == "O8Ti4"
    d = oo.oo_distances(atoms, "Ti", "anatase")
    assert d.n_octahedra == 4
    assert d.oo_octahedral_edge_nm == pytest.approx(0.2766, abs=2e-4)
    assert oo.guess_cation(atoms) == "Ti"


def test_cr2o3_corundum_octahedra():
    d = oo.oo_distances(oo.load_builtin("Cr2O3"), "Cr", "Cr2O3")
    assert d.n_octahedra == 12
    # larger than corundum Al2O3, as Cr3+ is larger than Al3+
    assert d.oo_octahedral_edge_nm == pytest.approx(0.2801, abs=2e-4)
    assert d.oo_octahedral_edge_nm > oo.oo_distances(oo.load_builtin("Al2O3_corundum"), "Al").oo_octahedral_edge_nm


def test_yag_keeps_octahedral_al_only():
    # Nakatsuka et al. (1999), COD 2003066: Al 16a octahedral, Al 24d tetrahedral
    atoms = oo.load_builtin("Y3Al5O12")
    assert atoms.get_chemical_formula() == "Al40O96Y24"
    d = oo.oo_distances(atoms, "Al", "YAG")
    assert d.n_octahedra == 16 and d.n_skipped == 24
    sym = np.array(atoms.get_chemical_symbols())
    frac = atoms.get_scaled_positions() % 0.5  # 16a: every coordinate 0 or 1/4 modulo 1/2; 24d has a 3/8
    al16a = np.flatnonzero((sym == "Al") & np.all(np.isclose(frac, 0.0, atol=1e-6) | np.isclose(frac, 0.25, atol=1e-6),
                                                  axis=1))
    bonds = np.sort(atoms.get_all_distances(mic=True)[np.ix_(al16a, np.flatnonzero(sym == "O"))], axis=1)[:, :6]
    assert np.ptp(bonds) < 1e-6  # six equal Al-O bonds on the -3 site
    # a nearly regular octahedron: mean edge = sqrt(2) x bond within 0.5 %
    assert d.oo_octahedral_edge_nm == pytest.approx(np.sqrt(2) * bonds.mean() / 10, rel=5e-3)


def test_tetrahedral_cation_is_a_clear_error():
    zno = bulk("ZnO", "wurtzite", a=3.25, c=5.21)
    with pytest.raises(SreelsInputError, match="six-coordinated"):
        oo.octahedral_edges_nm(zno, "Zn", "ZnO")


def test_elongated_4_plus_2_octahedra_are_kept():
    """A rock-salt cell stretched along c (axial/equatorial bond up to 1.35, Jahn-Teller-like)
    stays six-coordinated; the mean edge is that of 4 equatorial and 8 slanted edges."""
    for stretch in (1.0, 1.26, 1.35):
        a = 4.2
        atoms = bulk("MgO", "rocksalt", a=a, cubic=True)
        atoms.set_cell(atoms.cell * [1, 1, stretch], scale_atoms=True)
        d = oo.oo_distances(atoms, "Mg", "stretched")
        assert d.n_octahedra == 4 and d.n_skipped == 0
        eq, ax = a / 2, a * stretch / 2
        expect = (4 * np.sqrt(2) * eq + 8 * np.hypot(eq, ax)) / 12 / 10
        assert d.oo_octahedral_edge_nm == pytest.approx(expect, rel=1e-9)
    assert oo.first_shell([1.76, 1.76, 1.76, 1.76, 3.3]) == 4
    assert oo.first_shell([1.90] * 4 + [2.41] * 2 + [3.4]) == 6
