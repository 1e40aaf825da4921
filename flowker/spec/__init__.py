"""flowker.spec"""
