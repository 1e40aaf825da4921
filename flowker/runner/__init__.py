"""flowker.runner"""
