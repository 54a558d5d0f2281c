"""A reference names its file in another case (a tree made on a Mac or on Windows, whose file systems ignore
case): the one file its name matches ignoring case is the one meant; two such files are none."""

from __future__ import annotations

from transforms.input.images import ImageFile
from transforms.input.join import file_named, not_found_detail


def test_the_exact_name_wins_and_one_file_in_another_case_is_taken():
    files = [ImageFile("images/s00000/x.PNG"), ImageFile("images/s00000/x.png")]
    assert file_named(files, "images/s00000/x.png") == (files[1], [])
    assert file_named(files[:1], "images/s00000/x.png") == (files[0], files[:1])
    assert file_named([ImageFile("images/S00000/X.png")], "images/s00000/x.png")[0].path == "images/S00000/X.png"


def test_two_files_in_other_cases_match_nothing_and_are_named():
    files = [ImageFile("images/s00000/x.png"), ImageFile("images/s00000/x.PNG")]
    found, alike = file_named(files, "images/s00000/x.Png")
    assert found is None and [f.path for f in alike] == ["images/s00000/x.PNG", "images/s00000/x.png"]
    detail = not_found_detail("", "images/s00000/x.Png", alike)
    assert detail.startswith("images/s00000/x.Png: 2 files differ from it in case only (images/s00000/x.PNG, ")
    assert not_found_detail("", "images/s00000/y.png", []) == "images/s00000/y.png"


def test_the_trees_image_folders_are_read_in_any_case_in_references():
    from transforms.paths import tree_folder_in_case, tree_relative

    assert tree_folder_in_case("Images/s00000/x.png") == "images/s00000/x.png"
    assert tree_folder_in_case("MAPBOX_STILLS/a.png") == "mapbox_stills/a.png"
    assert tree_folder_in_case("Pictures/x.png") == "Pictures/x.png" and tree_folder_in_case("Images") == "Images"
    assert tree_relative("/Users/alice/tree/Images/s00000/x.png") == "images/s00000/x.png"
