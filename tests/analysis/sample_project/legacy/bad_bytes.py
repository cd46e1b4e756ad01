# -*- coding: utf-8 -*-
NAME = "café ÿþ"
